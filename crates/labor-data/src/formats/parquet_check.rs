//! Checks of a Parquet file's Thrift structures before the `parquet` crate decodes them.
//!
//! **Footer.** The crate's Thrift skipper reads no byte for a boolean list element (the
//! compact protocol spends one on each), so a footer with an unknown field holding a list of
//! two billion booleans, or lists of such lists, keeps it busy for minutes to forever (found by
//! fuzzing: a 3 KB file ran past libFuzzer's 20 s limit). [`check_footer`] walks the footer with
//! the skipper below, which spends at least one byte per value, so its work is bounded by the
//! footer's length, and refuses a footer it cannot walk.
//!
//! **Page headers.**
//! `parquet` 60 trusts a compressed page's declared `uncompressed_page_size` and reserves that
//! many bytes before decompressing (up to 2 GiB per page; a 2.7 KB file found by fuzzing made it
//! reserve ~4.5 GB). Snappy, the one codec this build reads, cannot expand its input more than
//! about 22-fold (a 3-byte copy tag yields at most 64 bytes), so a page that declares more is
//! malformed. This module walks a column chunk's page headers (Thrift compact protocol, read
//! here with a small skipper of our own, every length and nesting depth checked) and reports
//! such a page, or a page that runs past its column chunk, as an error.

/// No honest Snappy page expands more than this many times (the true bound is about 21.4).
pub const SNAPPY_MAX_RATIO: u64 = 32;
/// Slack for tiny pages: the Snappy length prefix and a copy's minimal output.
const SNAPPY_SLACK: u64 = 64;
/// Thrift structs nested deeper than this are not a page header.
const MAX_DEPTH: usize = 32;

/// What a page header declares about its sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    /// Bytes the header itself occupies.
    pub header_len: usize,
    pub uncompressed: i64,
    pub compressed: i64,
    /// A dictionary page's number of values (the `parquet` crate reserves room for that many
    /// before decoding them).
    pub dictionary_values: Option<i64>,
}

/// Why a header could not be read: `Short` means more bytes are needed (the caller may retry
/// with a larger window); `Bad` is a malformed header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    Bad(String),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, HeaderError> {
        let b = *self.bytes.get(self.at).ok_or(HeaderError::Short)?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), HeaderError> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(HeaderError::Short);
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, HeaderError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(HeaderError::Bad("a varint overflows 64 bits".into()));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(HeaderError::Bad("a varint is longer than 10 bytes".into()))
    }

    fn zigzag(&mut self) -> Result<i64, HeaderError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// Skips one value of compact type `t` (`in_struct`: booleans carry their value in the field
    /// header and occupy no byte of their own).
    fn skip_value(&mut self, t: u8, in_struct: bool, depth: usize) -> Result<(), HeaderError> {
        if depth > MAX_DEPTH {
            return Err(HeaderError::Bad(format!(
                "Thrift values nested deeper than {MAX_DEPTH}"
            )));
        }
        match t {
            1 | 2 if in_struct => Ok(()),
            1..=3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.skip_value(h & 0x0f, false, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip_value(kv >> 4, false, depth + 1)?;
                        self.skip_value(kv & 0x0f, false, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1, |_, _, _| Ok(false)),
            t => Err(HeaderError::Bad(format!("unknown Thrift compact type {t}"))),
        }
    }

    /// Walks a struct's fields; `field(cursor, id, type)` reads a field itself and returns
    /// true, or returns false to have it skipped.
    fn skip_struct(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&mut Self, i64, u8) -> Result<bool, HeaderError>,
    ) -> Result<(), HeaderError> {
        let mut id = 0i64;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(());
            }
            let t = h & 0x0f;
            id = match h >> 4 {
                0 => self.zigzag()?,
                d => id + i64::from(d),
            };
            if !field(self, id, t)? {
                self.skip_value(t, true, depth)?;
            }
        }
    }
}

/// Reads the page header at the start of `bytes`.
pub fn read_page_header(bytes: &[u8]) -> Result<PageSizes, HeaderError> {
    let mut c = Cursor { bytes, at: 0 };
    let (mut uncompressed, mut compressed, mut dictionary_values) = (None, None, None);
    c.skip_struct(0, |c, id, t| match (id, t) {
        (7, 12) => {
            c.skip_struct(1, |c, id, t| {
                if (id, t) == (1, 5) {
                    dictionary_values = Some(c.zigzag()?);
                    return Ok(true);
                }
                Ok(false)
            })?;
            Ok(true)
        }
        (2, 5) => {
            uncompressed = Some(c.zigzag()?);
            Ok(true)
        }
        (3, 5) => {
            compressed = Some(c.zigzag()?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    match (uncompressed, compressed) {
        (Some(u), Some(k)) => Ok(PageSizes {
            header_len: c.at,
            uncompressed: u,
            compressed: k,
            dictionary_values,
        }),
        _ => Err(HeaderError::Bad(
            "a page header lacks its uncompressed or compressed size".into(),
        )),
    }
}

/// Checks one page's declared sizes: `left` is what remains of its column chunk after the
/// header; `snappy` whether the chunk is Snappy-compressed.
pub fn check_page(p: &PageSizes, left: u64, snappy: bool) -> Result<(), String> {
    if p.compressed < 0 || p.uncompressed < 0 {
        return Err(format!(
            "a page header declares a negative size (compressed {}, uncompressed {})",
            p.compressed, p.uncompressed
        ));
    }
    if p.compressed as u64 > left {
        return Err(format!(
            "a page declares {} compressed bytes but only {left} remain in its column chunk",
            p.compressed
        ));
    }
    if snappy && p.uncompressed as u64 > SNAPPY_MAX_RATIO * p.compressed as u64 + SNAPPY_SLACK {
        return Err(format!(
            "a Snappy page declares {} uncompressed bytes from {} compressed ones, more than \
             Snappy can expand to",
            p.uncompressed, p.compressed
        ));
    }
    // A dictionary entry takes at least one bit (in practice at least a byte) of the page.
    let bytes = if snappy { p.uncompressed } else { p.compressed } as u64;
    if let Some(n) = p.dictionary_values
        && (n < 0 || n as u64 > 8 * bytes + 8)
    {
        return Err(format!(
            "a dictionary page declares {n} values in {bytes} bytes"
        ));
    }
    Ok(())
}

/// Walks a file's footer metadata (the Thrift `FileMetaData` struct, `bytes` = exactly its
/// serialized length), refusing malformed or truncated structure.
pub fn check_footer(bytes: &[u8]) -> Result<(), String> {
    let mut c = Cursor { bytes, at: 0 };
    match c.skip_struct(0, |_, _, _| Ok(false)) {
        Ok(()) => Ok(()),
        Err(HeaderError::Short) => Err("the footer metadata ends inside a value".into()),
        Err(HeaderError::Bad(why)) => Err(format!("the footer metadata: {why}")),
    }
}

/// Walks every page header of a column chunk of `len` bytes; `read(offset, n)` returns up to
/// `n` bytes of the chunk from `offset` (fewer only at its end).
pub fn check_column_chunk(
    len: u64,
    snappy: bool,
    mut read: impl FnMut(u64, usize) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let mut at = 0u64;
    let mut page = 0usize;
    while at < len {
        let left = len - at;
        let mut window = 4096u64.min(left);
        let sizes = loop {
            let bytes = read(at, window as usize)?;
            match read_page_header(&bytes) {
                Ok(s) => break s,
                Err(HeaderError::Short) if window < left => window = (window * 4).min(left),
                Err(HeaderError::Short) => {
                    return Err(format!(
                        "page {page}: its header runs past its column chunk"
                    ));
                }
                Err(HeaderError::Bad(why)) => return Err(format!("page {page}: {why}")),
            }
        };
        let after = left - sizes.header_len as u64;
        check_page(&sizes, after, snappy).map_err(|e| format!("page {page}: {e}"))?;
        at += sizes.header_len as u64 + sizes.compressed as u64;
        page += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zz(v: i64) -> Vec<u8> {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = vec![];
        loop {
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// A header: type DATA_PAGE, the two sizes, then a nested struct with a list and a binary.
    fn header(uncompressed: i64, compressed: i64) -> Vec<u8> {
        header_with(uncompressed, compressed, None)
    }

    /// The same, with a dictionary page header (field 7) of `dictionary_values` values.
    fn header_with(uncompressed: i64, compressed: i64, dictionary_values: Option<i64>) -> Vec<u8> {
        let mut h = vec![0x15];
        h.extend(zz(0));
        h.push(0x15);
        h.extend(zz(uncompressed));
        h.push(0x15);
        h.extend(zz(compressed));
        // field 5: struct { 1: i32 7, 2: list<i32>[3], 3: binary "ab", 4: bool true }
        h.push(0x2c);
        h.push(0x15);
        h.extend(zz(7));
        h.push(0x19);
        h.push(0x35);
        h.extend(zz(1).into_iter().chain(zz(2)).chain(zz(3)));
        h.push(0x18);
        h.extend([2, b'a', b'b']);
        h.push(0x11);
        h.push(0);
        if let Some(n) = dictionary_values {
            // field 7: struct { 1: i32 n, 2: i32 0 (PLAIN) }
            h.push(0x2c);
            h.push(0x15);
            h.extend(zz(n));
            h.push(0x15);
            h.extend(zz(0));
            h.push(0);
        }
        h.push(0);
        h
    }

    #[test]
    fn reads_the_sizes_and_the_header_length_past_nested_fields() {
        let h = header(1000, 300);
        let s = read_page_header(&h).unwrap();
        assert_eq!(s.uncompressed, 1000);
        assert_eq!(s.compressed, 300);
        assert_eq!(s.header_len, h.len());
        assert_eq!(s.dictionary_values, None);
        let d = header_with(1000, 300, Some(2_000_000_000));
        assert_eq!(
            read_page_header(&d).unwrap().dictionary_values,
            Some(2_000_000_000)
        );
        for cut in 0..h.len() {
            assert_eq!(
                read_page_header(&h[..cut]),
                Err(HeaderError::Short),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_snappy_page_that_claims_more_than_snappy_can_expand_is_refused() {
        let ok = PageSizes {
            header_len: 10,
            uncompressed: 21 * 300,
            compressed: 300,
            dictionary_values: Some(50),
        };
        check_page(&ok, 300, true).unwrap();
        let huge = PageSizes {
            uncompressed: 2_000_000_000,
            dictionary_values: None,
            ..ok
        };
        let e = check_page(&huge, 300, true).unwrap_err();
        assert!(e.contains("more than Snappy can expand"), "{e}");
        // Uncompressed pages are not bounded by a ratio (their size is their length).
        check_page(&huge, 300, false).unwrap();
        let past = PageSizes {
            uncompressed: 10,
            compressed: 301,
            ..huge
        };
        assert!(
            check_page(&past, 300, false)
                .unwrap_err()
                .contains("only 300 remain")
        );
        let neg = PageSizes {
            uncompressed: -1,
            compressed: 3,
            ..huge
        };
        assert!(
            check_page(&neg, 300, false)
                .unwrap_err()
                .contains("negative")
        );
        // A dictionary of two billion values in a 300-byte page (what the fuzzer's file did).
        let dict = PageSizes {
            uncompressed: 300,
            dictionary_values: Some(2_000_000_000),
            ..ok
        };
        let e = check_page(&dict, 300, true).unwrap_err();
        assert!(
            e.contains("dictionary page declares 2000000000 values"),
            "{e}"
        );
        let fits = PageSizes {
            dictionary_values: Some(2400),
            ..dict
        };
        check_page(&fits, 300, true).unwrap();
    }

    #[test]
    fn a_footer_with_a_list_of_billions_of_booleans_is_refused_at_once() {
        // field 1: list of 2^31 - 1 booleans (element type 1), with only 3 bytes behind it.
        let mut f = vec![0x19, 0xf1];
        f.extend([0xff, 0xff, 0xff, 0xff, 0x07]);
        f.extend([1, 1, 1]);
        let t = std::time::Instant::now();
        assert_eq!(
            check_footer(&f),
            Err("the footer metadata ends inside a value".to_string())
        );
        assert!(t.elapsed().as_secs() < 5);
        // A well-formed footer-like struct: field 1 i32, field 2 list of 2 structs, stop.
        let mut ok = vec![0x15];
        ok.extend(zz(2));
        ok.extend([0x19, 0x2c, 0x15]);
        ok.extend(zz(3));
        ok.extend([0x00, 0x00, 0x00]);
        check_footer(&ok).unwrap();
        assert!(check_footer(&ok[..ok.len() - 1]).is_err());
    }

    #[test]
    fn deep_nesting_and_unknown_types_are_errors_not_recursion() {
        // field 1: struct, containing field 1: struct, ... 10,000 deep.
        let deep = vec![0x1c; 10_000];
        assert!(
            matches!(read_page_header(&deep), Err(HeaderError::Bad(e)) if e.contains("nested"))
        );
        assert!(
            matches!(read_page_header(&[0x1e]), Err(HeaderError::Bad(e)) if e.contains("type 14"))
        );
    }

    #[test]
    fn a_chunk_is_walked_page_by_page_with_growing_windows() {
        let mut chunk = vec![];
        for _ in 0..3 {
            chunk.extend(header(40, 20));
            chunk.extend([0u8; 20]);
        }
        let mut reads = 0;
        let read = |at: u64, n: usize| {
            reads += 1;
            let at = at as usize;
            Ok(chunk[at..(at + n).min(chunk.len())].to_vec())
        };
        check_column_chunk(chunk.len() as u64, true, read).unwrap();
        assert_eq!(reads, 3);
        let e = check_column_chunk(chunk.len() as u64 - 1, true, |at, n| {
            let at = at as usize;
            Ok(chunk[at..(at + n).min(chunk.len() - 1)].to_vec())
        })
        .unwrap_err();
        assert!(e.starts_with("page 2:"), "{e}");
    }
}
