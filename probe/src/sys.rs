//! The one place the probe calls the kernel without a safe wrapper: SysV shared memory and
//! keyctl(2), which neither `nix` nor `rustix` offers.
#![expect(
    unsafe_code,
    reason = "shmget(2) and keyctl(2) have no safe wrapper in nix or rustix"
)]

use nix::errno::Errno;

/// Creates a 4 KiB SysV shared memory segment with `key` (failing if one exists); returns its id.
pub fn shm_create(key: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes plain integers and touches no memory of ours; the segment is not attached.
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    Errno::result(id)
}

/// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): the session keyring's id, or the
/// errno. Reads only: with `create` 0 the kernel makes no keyring.
pub fn keyctl_session_id() -> Result<i64, Errno> {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: keyctl with these arguments takes three integers and reads no memory of ours.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0 as libc::c_long,
        )
    };
    Errno::result(id)
}
