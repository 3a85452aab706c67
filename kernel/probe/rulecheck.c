// SPDX-License-Identifier: GPL-2.0
/*
 * fpio-rulecheck: what fpio predicts a kernel keeps from a passthrough open reply.
 *   fpio-rulecheck legacy|series
 * dlopen()s libfpio.so.0 (so the probe builds without fpio) and prints
 *   rule=R sent=0x.. kept=0x.. parallel_direct_writes=kept|dropped
 * for the reply FOPEN_PASSTHROUGH | FOPEN_PARALLEL_DIRECT_WRITES.
 * Exit 0 on success, 3 if libfpio cannot be loaded.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define FOPEN_PARALLEL_DIRECT_WRITES (1u << 6)
#define FOPEN_PASSTHROUGH (1u << 7)

int main(int argc, char **argv)
{
	int (*eff)(uint32_t, uint32_t, uint32_t *);
	uint32_t sent = FOPEN_PASSTHROUGH | FOPEN_PARALLEL_DIRECT_WRITES, kept = 0, rule;
	void *h;
	int rc;

	if (argc != 2 || (strcmp(argv[1], "legacy") && strcmp(argv[1], "series"))) {
		fprintf(stderr, "usage: fpio-rulecheck legacy|series\n");
		return 2;
	}
	rule = !strcmp(argv[1], "series"); /* FPIO_RULE_LEGACY = 0, FPIO_RULE_SERIES = 1 */
	h = dlopen("libfpio.so.0", RTLD_NOW);
	if (!h) {
		fprintf(stderr, "fpio-rulecheck: %s\n", dlerror());
		return 3;
	}
	*(void **)&eff = dlsym(h, "fpio_effective_open_flags");
	if (!eff) {
		fprintf(stderr, "fpio-rulecheck: %s\n", dlerror());
		return 3;
	}
	rc = eff(sent, rule, &kept);
	if (rc) {
		fprintf(stderr, "fpio-rulecheck: fpio_effective_open_flags: %d\n", rc);
		return 1;
	}
	printf("rule=%s sent=0x%x kept=0x%x parallel_direct_writes=%s\n", argv[1], sent,
	       kept, (kept & FOPEN_PARALLEL_DIRECT_WRITES) ? "kept" : "dropped");
	return 0;
}
