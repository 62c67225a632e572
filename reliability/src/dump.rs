//! A module value's DUMP payload taken apart into the buffers the module
//! saved, so the checker can read a key of any size in one atomic step
//! (DUMP inside its MULTI) and rebuild it with the module's own decoder.
//!
//! The layout is the server's RDB object encoding: the module type opcode
//! (`RDB_TYPE_MODULE_2`), the module id whose low 10 bits are the encoding
//! version, then per `RM_SaveStringBuffer` the opcode `STRING` and an RDB
//! string (plain, integer-encoded or LZF-compressed), then `EOF`, then the
//! 2-byte RDB version and the CRC-64.

const TYPE_MODULE_2: u8 = 7;
const OPCODE_EOF: u64 = 0;
const OPCODE_STRING: u64 = 5;
/// No buffer the module writes comes near this; a larger claim is corrupt.
const MAX_BUFFER: usize = 256 << 20;

/// The encoding version and the buffers of a module value's DUMP payload.
pub fn module_buffers(payload: &[u8]) -> Result<(i32, Vec<Vec<u8>>), String> {
    let body = payload
        .len()
        .checked_sub(10)
        .map(|n| &payload[..n])
        .ok_or("DUMP payload shorter than its trailer")?;
    let mut r = Reader { buf: body, at: 0 };
    if r.byte()? != TYPE_MODULE_2 {
        return Err("DUMP payload is not a module value".into());
    }
    let id = r.len()?;
    let mut buffers = Vec::new();
    loop {
        match r.len()? {
            OPCODE_EOF => break,
            OPCODE_STRING => buffers.push(r.string()?),
            op => return Err(format!("module opcode {op} (only strings are saved)")),
        }
    }
    if r.at != body.len() {
        return Err(format!("{} bytes after EOF", body.len() - r.at));
    }
    Ok(((id & 1023) as i32, buffers))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

/// An RDB length, or the special encoding a string's length byte names.
enum Len {
    Plain(u64),
    Encoded(u8),
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("DUMP payload ends inside a field at {}", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0, |v, b| (v << 8) | u64::from(*b)))
    }

    fn le(&mut self, n: usize) -> Result<i64, String> {
        let b = self.take(n)?;
        Ok(match n {
            1 => i64::from(b[0] as i8),
            2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            _ => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        })
    }

    fn len_or_encoding(&mut self) -> Result<Len, String> {
        let b = self.byte()?;
        Ok(match (b >> 6, b) {
            (0, _) => Len::Plain(u64::from(b & 63)),
            (1, _) => Len::Plain((u64::from(b & 63) << 8) | u64::from(self.byte()?)),
            (2, 0x80) => Len::Plain(self.be(4)?),
            (2, 0x81) => Len::Plain(self.be(8)?),
            (3, _) => Len::Encoded(b & 63),
            _ => return Err(format!("length byte {b:#x}")),
        })
    }

    fn len(&mut self) -> Result<u64, String> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => Err(format!("an encoded string ({e}) where a length belongs")),
        }
    }

    fn size(&mut self) -> Result<usize, String> {
        bounded(self.len()?)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Ok(self.take(bounded(n)?)?.to_vec()),
            Len::Encoded(e @ 0..=2) => Ok(self.le(1 << e)?.to_string().into_bytes()),
            Len::Encoded(3) => {
                let (packed, plain) = (self.size()?, self.size()?);
                let data = self.take(packed)?;
                let out = lzf::decompress(data, plain).map_err(|e| format!("LZF: {e:?}"))?;
                if out.len() != plain {
                    return Err(format!("LZF gave {} bytes, not {plain}", out.len()));
                }
                Ok(out)
            }
            Len::Encoded(e) => Err(format!("string encoding {e}")),
        }
    }
}

fn bounded(n: u64) -> Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_BUFFER)
        .ok_or_else(|| format!("a string of {n} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as the server writes it: type, module id (encoding
    /// version 1 in its low bits), the given strings, EOF, the trailer.
    fn payload(strings: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![TYPE_MODULE_2, 0x81];
        p.extend_from_slice(&((0xabcd_u64 << 10) | 1).to_be_bytes());
        for s in strings {
            p.push(OPCODE_STRING as u8);
            p.extend_from_slice(s);
        }
        p.push(OPCODE_EOF as u8);
        p.extend_from_slice(&[0; 10]);
        p
    }

    #[test]
    fn plain_integer_and_compressed_strings() {
        let long = b"abcabcabcabcabcabcabcabcabcabcabcabc".to_vec();
        let packed = lzf::compress(&long).unwrap();
        let mut lzf_string = vec![0xc3, packed.len() as u8, long.len() as u8];
        lzf_string.extend_from_slice(&packed);
        let got = module_buffers(&payload(&[
            b"\x03abc".to_vec(),
            vec![0xc0, 0xf6],
            vec![0xc1, 0x39, 0x30],
            lzf_string,
        ]));
        let want = vec![b"abc".to_vec(), b"-10".to_vec(), b"12345".to_vec(), long];
        assert_eq!(got, Ok((1, want)));
    }

    #[test]
    fn damage_is_an_error() {
        let good = payload(&[b"\x03abc".to_vec()]);
        assert!(module_buffers(&good).is_ok());
        for cut in 0..good.len() - 10 {
            let mut p = good[..cut].to_vec();
            p.extend_from_slice(&[0; 10]);
            assert!(module_buffers(&p).is_err(), "cut at {cut}");
        }
        // The string's length byte (at 11) claims 2^63 bytes.
        let mut huge = good.clone();
        huge.splice(11..12, [0x81, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            module_buffers(&huge),
            Err(format!("a string of {} bytes", 1_u64 << 63))
        );
        let mut other_op = good;
        other_op[10] = 2;
        assert!(module_buffers(&other_op).is_err());
    }
}
