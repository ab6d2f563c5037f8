//! The one place the probe calls the kernel without a safe wrapper: SysV shared memory, which
//! neither `nix` nor `rustix` offers.
#![expect(unsafe_code, reason = "shmget(2) has no safe wrapper in nix or rustix")]

use nix::errno::Errno;

/// Creates a 4 KiB SysV shared memory segment with `key` (failing if one exists); returns its id.
pub fn shm_create(key: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes plain integers and touches no memory of ours; the segment is not attached.
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    Errno::result(id)
}
