//! Mounting the BPF filesystem when it is missing.

use std::{ffi::CString, io, path::Path};

/// `BPF_FS_MAGIC` from linux/magic.h: the f_type statfs reports for bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where bpffs is mounted on every distribution.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// True when `path` is on a mounted bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mounts bpffs on /sys/fs/bpf unless it already is. Returns whether it mounted.
pub fn ensure_mounted() -> io::Result<bool> {
    let root = Path::new(BPFFS_ROOT);
    if is_bpffs(root) {
        return Ok(false);
    }
    std::fs::create_dir_all(root)?;
    let src = CString::new("bpf").expect("no NUL");
    let target = CString::new(BPFFS_ROOT).expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings; data may be null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}
