//! A minimal pcap writer (libpcap format 2.4, Ethernet link type), so a
//! mismatching fixture can be opened in Wireshark or `tcpdump -r`.

use std::{io::Write, path::Path};

/// Writes `frames` to `path` (one record each, timestamps 1 s apart).
pub fn write(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic (microsecond timestamps)
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // timezone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes()); // seconds
        out.extend_from_slice(&0u32.to_le_bytes()); // microseconds
        out.extend_from_slice(&(f.len() as u32).to_le_bytes()); // captured
        out.extend_from_slice(&(f.len() as u32).to_le_bytes()); // on the wire
        out.extend_from_slice(f);
    }
    std::fs::File::create(path)?.write_all(&out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pcap_file_has_the_global_header_and_one_record_per_frame() {
        let path = std::env::temp_dir().join(format!("weir-pcap-{}.pcap", std::process::id()));
        super::write(&path, &[vec![1, 2, 3], vec![4; 60]]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(bytes.len(), 24 + (16 + 3) + (16 + 60));
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(bytes[20], 1, "Ethernet link type");
    }
}
