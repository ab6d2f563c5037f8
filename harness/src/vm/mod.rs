//! `palisade vm`: runs the suite in a throwaway QEMU guest built from what is on the host (its
//! kernel, its modules, Palisade's own static binaries, the runtimes under test), with no image
//! download and no network. The guest reports back over a second serial port.

pub mod cpio;
pub mod guard;
pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod protocol;
pub mod qemu;
pub mod report;
mod session;

pub use protocol::{CgroupLayout, GuestConfig, GuestEvent};
pub use qemu::{Accel, VmOptions, VmReport, run_vm};
pub use report::GuestReport;
