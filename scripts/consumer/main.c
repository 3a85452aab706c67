/* A minimal fpio consumer: built against an installed fpio by
 * scripts/check-consumer.sh, with pkg-config and with meson. */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <fpio.h>
#include <stdio.h>

int main(void)
{
	uint32_t kept = 0;

	/* Touch the io-mode API and the header macros so linking is real. */
	if (fpio_effective_open_flags(FPIO_FOPEN_PASSTHROUGH | FPIO_FOPEN_PARALLEL_DIRECT_WRITES,
				      FPIO_RULE_SERIES, &kept) != 0 ||
	    !FOPEN_IOMODE_IS_PASSTHROUGH(kept) || !fpio_iomode_is_passthrough(kept))
		return 1;
	puts(fpio_version());
	return 0;
}
