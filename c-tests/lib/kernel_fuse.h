/* Constants of the kernel's FUSE UAPI (<linux/fuse.h>) that the tests compare
 * fpio with. Names the installed header may be too old to have (Debian 12's
 * is FUSE 7.38) get the value the kernel gave them, with the minor version
 * that introduced it. Include after <linux/fuse.h>. */
#ifndef FPIO_TEST_KERNEL_FUSE_H
#define FPIO_TEST_KERNEL_FUSE_H

#ifdef FOPEN_PASSTHROUGH
#define K_FOPEN_PASSTHROUGH FOPEN_PASSTHROUGH
#else
#define K_FOPEN_PASSTHROUGH (1 << 7) /* FUSE 7.40 (Linux 6.9) */
#endif

#ifdef FUSE_PASSTHROUGH
#define K_FUSE_PASSTHROUGH FUSE_PASSTHROUGH
#else
#define K_FUSE_PASSTHROUGH (1ULL << 37) /* FUSE 7.40: INIT flags2 bit 5 */
#endif

#endif
