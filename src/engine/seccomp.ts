/**
 * Krater's default seccomp profile. Docker ships an allowlist; this one is a denylist written for Krater: every
 * system call is allowed except those that reach the kernel or the host rather than the container — loading and
 * replacing kernels and modules, clocks, swap, accounting, kernel keyrings, BPF and perf, userfaultfd, handle-based
 * file opening (escapes through `open_by_handle_at`), other processes' memory, the new mount API, and creating user
 * namespaces (the kernel surface unprivileged containers should not get). With the capabilities the container is
 * not given, most of these fail anyway; the profile is the second wall.
 *
 * Calls the host's libseccomp does not know are skipped by runc, so the list can name calls of newer kernels.
 */

/** Denied with EPERM. */
const DENIED = [
  // kernels and modules
  'kexec_load',
  'kexec_file_load',
  'init_module',
  'finit_module',
  'delete_module',
  'create_module',
  'get_kernel_syms',
  'query_module',
  'reboot',
  // clocks
  'settimeofday',
  'stime',
  'clock_settime',
  'clock_settime64',
  'clock_adjtime',
  'clock_adjtime64',
  'adjtimex',
  // host resources and accounting
  'swapon',
  'swapoff',
  'acct',
  'quotactl',
  'quotactl_fd',
  'syslog',
  'lookup_dcookie',
  'nfsservctl',
  'uselib',
  'ustat',
  'sysfs',
  '_sysctl',
  'vhangup',
  'iopl',
  'ioperm',
  'vm86',
  'vm86old',
  // keyrings, BPF, perf, userfaultfd
  'add_key',
  'request_key',
  'keyctl',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'fanotify_init',
  // other processes and file handles
  'process_vm_readv',
  'process_vm_writev',
  'kcmp',
  'open_by_handle_at',
  'name_to_handle_at',
  // namespaces and mounts
  'unshare',
  'setns',
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
] as const;

const CLONE_NEWUSER = 0x10000000;
const EPERM = 1;
const ENOSYS = 38;

/** The `linux.seccomp` section of an OCI spec for this machine's architecture. */
export function defaultSeccomp(arch: string = process.arch): Record<string, unknown> {
  const architectures =
    arch === 'arm64' ? ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] : ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures,
    syscalls: [
      { names: [...DENIED], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // clone() may not create a user namespace (its flags are the first argument on these architectures).
      {
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ' }],
      },
      // clone3 passes its flags in memory, where seccomp cannot look: ENOSYS makes libc fall back to clone().
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}
