//! Record framing of `entries.dat`: `len u32 LE | crc32c(len) u32 LE | crc32c(payload) u32 LE |
//! payload`. The header checksum tells a torn record (incomplete at end of file) from a damaged
//! one (complete but wrong): only the former is ever dropped on recovery.

/// Bytes of a record header.
pub const HEADER_LEN: usize = 12;

/// Largest payload accepted (1 MiB): audit entries are small; a larger length is damage.
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// File header of `entries.dat` (magic and format version 1).
pub const FILE_MAGIC: &[u8; 16] = b"ATOM-AUDIT-LOG\x00\x01";

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C of `data` (as in iSCSI / ext4 / LevelDB).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Encode one record into `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    let lb = len.to_le_bytes();
    out.extend_from_slice(&lb);
    out.extend_from_slice(&crc32c(&lb).to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is wrong with a record header or payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The header checksum does not match the length field.
    HeaderChecksum,
    /// The length field is zero or above the 1 MiB payload limit.
    BadLength(u32),
    /// The payload checksum does not match.
    PayloadChecksum,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::HeaderChecksum => f.write_str("header checksum mismatch"),
            Fault::BadLength(l) => write!(f, "record length {l} is 0 or above the 1 MiB limit"),
            Fault::PayloadChecksum => f.write_str("payload checksum mismatch"),
        }
    }
}

/// A parsed, checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Payload checksum.
    pub payload_crc: u32,
}

/// Check a 12-byte header.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<Header, Fault> {
    let lb = [h[0], h[1], h[2], h[3]];
    let len = u32::from_le_bytes(lb);
    let hcrc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if crc32c(&lb) != hcrc {
        return Err(Fault::HeaderChecksum);
    }
    if len == 0 || len > MAX_PAYLOAD {
        return Err(Fault::BadLength(len));
    }
    Ok(Header {
        len,
        payload_crc: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C (RFC 3720 appendix B.4 / Koopman's tables).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn header_roundtrip_and_faults() {
        let mut v = Vec::new();
        encode(b"hello", &mut v);
        let h: [u8; HEADER_LEN] = v[..HEADER_LEN].try_into().unwrap_or([0; HEADER_LEN]);
        let hd = parse_header(&h).unwrap_or(Header {
            len: 0,
            payload_crc: 0,
        });
        assert_eq!(hd.len, 5);
        assert_eq!(hd.payload_crc, crc32c(b"hello"));
        let mut bad = h;
        bad[0] ^= 1;
        assert_eq!(parse_header(&bad), Err(Fault::HeaderChecksum));
    }
}
