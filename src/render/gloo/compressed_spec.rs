//! Gloo's compressed Proxy spec (`compressedSpec`: base64 of a zlib stream of the spec's JSON),
//! built from pieces that are compressed once and reused by the router's next render.
//!
//! A deflate stream is a sequence of blocks, and a block may refer back to the last 32 KiB of
//! text whichever block wrote it. A piece compressed on its own, with the text just before it
//! as its preset dictionary, and ended with a sync flush, is a run of non-final blocks that ends
//! on a byte boundary; pieces compressed so can be joined: zlib header, the pieces in order, an
//! empty final block, and the Adler-32 of the whole text (combined from the pieces'). Any zlib
//! reader (Gloo's Go `compress/zlib`) reads the joined stream as one, and it is about as small
//! as one compressed in a single pass.
//!
//! The JSON is cut just before some of the virtual hosts: those whose first domain hashes to 0
//! modulo `cut_every` ([`CUT_EVERY`] by default), so that adding or removing a virtual host
//! moves no other cut. A piece depends on its text and the text before it (its dictionary: the
//! end of the previous piece), so a change of one Service changes at most two pieces; every
//! other piece is found in the [`Pieces`] of the previous render, by a key chained from what
//! identifies its text and the text before ([`keys`]). A render identifies a piece by the
//! virtual hosts it holds and the text around them, and encodes only the pieces it does not
//! find (`gloo::proxy`); `zlib`, the reference the tests compare with, by its text. The
//! output depends on the JSON alone: the same bytes with an empty memo or a warm one.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};

use crate::render::RenderError;
use crate::render::routes::VirtualHost;

/// On average one virtual host in this many starts a piece (about 28 KiB of JSON per piece
/// with the default host template). Smaller pieces are quicker to redo but each adds a block
/// header (about 100 bytes) to the stream. `make bench` ("piece hosts"), one Service added to
/// 10,000 virtual hosts: 2.2 ms at 512, 0.94 ms at 128, 0.90 ms at 64; the Proxy 2.4 % larger
/// at 128 than at 512, 4.8 % at 64.
pub const CUT_EVERY: NonZeroU64 = NonZeroU64::new(128).expect("not zero");
/// Deflate's window: how far back a piece may refer.
const WINDOW: usize = 32 * 1024;

/// Where the JSON of a virtual host other than the first of its list starts: the spec is
/// encoded with sorted keys, and a virtual host's first key is `domains`.
#[cfg(test)]
const VIRTUAL_HOST_START: &[u8] = b"},{\"domains\":[\"";

/// zlib's two header bytes: deflate with a 32 KiB window, default level, no dictionary.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x9c];
/// An empty final block (fixed Huffman codes: BFINAL 1, BTYPE 01, end-of-block code 0000000),
/// starting on a byte boundary, as every piece ends on one.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// The compressed pieces of a router's last render, by their keys (see [`keys`]).
#[derive(Clone, Debug, Default)]
pub struct Pieces {
    by_key: HashMap<[u8; 32], Arc<Piece>>,
    /// How many pieces the last stream had to compress (the others were reused).
    compressed: usize,
    /// The length of the last text.
    text_len: usize,
}

#[derive(Clone, Debug)]
struct Piece {
    deflated: Vec<u8>,
    adler: u32,
    len: usize,
    /// What the piece's identity refers to (the virtual hosts whose addresses it names), kept
    /// alive so that no other can take an address while the piece is known by it.
    #[expect(dead_code, reason = "held, never read")]
    holds: Vec<Arc<VirtualHost>>,
}

impl Pieces {
    /// How many pieces are kept.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// How many pieces the last stream had to compress; the others were reused.
    pub fn compressed(&self) -> usize {
        self.compressed
    }

    /// No pieces, after a text of `len` bytes that was not compressed.
    pub fn uncompressed(len: usize) -> Self {
        Self {
            text_len: len,
            ..Self::default()
        }
    }
}

/// The zlib stream of `json` cut before one virtual host in about `cut_every`, each piece
/// known by its text, reusing the pieces of `memo` and leaving in it exactly the pieces of this
/// stream. (A render knows its pieces by the virtual hosts they hold, see `gloo::proxy`; this
/// form is the reference it is tested against.)
#[cfg(test)]
pub fn zlib(json: &[u8], cut_every: NonZeroU64, memo: &mut Pieces) -> Result<Vec<u8>, RenderError> {
    let texts: Vec<&[u8]> = pieces(json, cut_every).collect();
    let identities: Vec<[u8; 32]> = texts.iter().map(|t| Sha256::digest(t).into()).collect();
    zlib_of(
        &keys(&identities),
        |i| Ok(texts[i].to_vec()),
        |_| Vec::new(),
        Known {
            own: memo,
            shared: &mut Pieces::default(),
        },
    )
}

/// The keys a memo knows pieces by, from what identifies each piece's text: a piece compresses
/// to the same bytes only after the same piece (the end of its text is the dictionary).
pub fn keys(identities: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut before = [0; 32];
    identities
        .iter()
        .map(|identity| {
            let key: [u8; 32] = Sha256::new()
                .chain_update(before)
                .chain_update(identity)
                .finalize()
                .into();
            before = *identity;
            key
        })
        .collect()
}

impl Pieces {
    /// The length of the text of the piece known by `key`, when it is kept.
    pub fn len_of(&self, key: &[u8; 32]) -> Option<usize> {
        self.by_key.get(key).map(|p| p.len)
    }
}

/// The pieces a render may reuse: the router's own (those of its last stream), and those of
/// the last stream of any router with the same route table (a key names the same bytes
/// whoever compressed them, see [`keys`]).
pub struct Known<'a> {
    pub own: &'a mut Pieces,
    pub shared: &'a mut Pieces,
}

impl Known<'_> {
    /// The length of the text of the piece known by `key`, when either memo keeps it.
    pub fn len_of(&self, key: &[u8; 32]) -> Option<usize> {
        self.own.len_of(key).or_else(|| self.shared.len_of(key))
    }
}

/// The zlib stream of the pieces known by `keys` (see [`keys`]), reusing the pieces `known`
/// keeps and leaving in both its memos exactly the pieces of this stream. `text(i)` gives the
/// text of piece `i`; it is asked only for the pieces neither memo holds and for the piece
/// before each of them (the dictionary). `holds(i)` is what piece `i`'s identity refers to,
/// kept with it.
pub fn zlib_of(
    keys: &[[u8; 32]],
    mut text: impl FnMut(usize) -> Result<Vec<u8>, RenderError>,
    mut holds: impl FnMut(usize) -> Vec<Arc<VirtualHost>>,
    known: Known<'_>,
) -> Result<Vec<u8>, RenderError> {
    let memo = known.own;
    let mut kept: HashMap<[u8; 32], Arc<Piece>> = HashMap::with_capacity(keys.len());
    let mut out = Vec::with_capacity(memo.text_len / 16);
    out.extend_from_slice(&ZLIB_HEADER);
    let mut adler: Option<u32> = None;
    let (mut compressed, mut text_len) = (0, 0);
    // The text of the piece before, when it was needed.
    let mut before: Option<Vec<u8>> = None;
    for (i, key) in keys.iter().enumerate() {
        let mut this_text = None;
        if !kept.contains_key(key) {
            let piece = match memo
                .by_key
                .remove(key)
                .or_else(|| known.shared.by_key.get(key).cloned())
            {
                Some(p) => p,
                None => {
                    let dictionary = match (i, before.take()) {
                        (0, _) => Vec::new(),
                        (_, Some(t)) => t,
                        (_, None) => text(i - 1)?,
                    };
                    let t = text(i)?;
                    compressed += 1;
                    let piece = Arc::new(deflate(
                        &t,
                        &dictionary[dictionary.len().saturating_sub(WINDOW)..],
                        holds(i),
                    )?);
                    this_text = Some(t);
                    piece
                }
            };
            kept.insert(*key, piece);
        }
        let Some(piece) = kept.get(key) else {
            continue;
        };
        out.extend_from_slice(&piece.deflated);
        adler = Some(match adler {
            None => piece.adler,
            Some(so_far) => adler32_combine(so_far, piece.adler, piece.len),
        });
        text_len += piece.len;
        before = this_text;
    }
    out.extend_from_slice(&FINAL_EMPTY_BLOCK);
    out.extend_from_slice(&adler.unwrap_or(1).to_be_bytes());
    *known.shared = Pieces {
        by_key: kept.clone(),
        compressed,
        text_len,
    };
    *memo = Pieces {
        by_key: kept,
        compressed,
        text_len,
    };
    Ok(out)
}

/// `json` cut before the virtual hosts chosen by [`cuts_before`].
#[cfg(test)]
fn pieces(json: &[u8], cut_every: NonZeroU64) -> impl Iterator<Item = &[u8]> {
    let mut cuts: Vec<usize> = memchr::memmem::find_iter(json, VIRTUAL_HOST_START)
        .map(|at| at + 2)
        .filter(|&start| cuts_before(&json[start + VIRTUAL_HOST_START.len() - 2..], cut_every))
        .collect();
    cuts.push(json.len());
    let mut from = 0;
    cuts.into_iter().filter_map(move |to| {
        let piece = &json[from..to];
        from = to;
        (!piece.is_empty()).then_some(piece)
    })
}

/// Whether a piece starts at the virtual host whose first domain begins `rest` (up to the
/// closing quote): FNV-1a of the domain, modulo `cut_every`.
pub fn cuts_before(rest: &[u8], cut_every: NonZeroU64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in rest.iter().take_while(|&&b| b != b'"') {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % cut_every == 0
}

/// One piece as raw deflate blocks that may refer to `dictionary` (the text just before it),
/// ended by a sync flush.
fn deflate(
    text: &[u8],
    dictionary: &[u8],
    holds: Vec<Arc<VirtualHost>>,
) -> Result<Piece, RenderError> {
    let error = |e: flate2::CompressError| RenderError::serialize("compressed Proxy spec", e);
    let mut c = Compress::new(Compression::default(), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(error)?;
    }
    let mut out = Vec::with_capacity(text.len() / 8 + 64);
    loop {
        // Room for at least a sync flush's marker: a flush that exactly fills the buffer would
        // be followed by a second, empty one.
        if out.capacity() - out.len() < 64 {
            out.reserve(text.len() / 8 + 64);
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        let rest = text.get(consumed..).unwrap_or_default();
        let status = c
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .map_err(error)?;
        // The flush is complete once all input is taken and the output was not filled.
        let done = usize::try_from(c.total_in()).ok() == Some(text.len());
        if done && out.len() < out.capacity() || status == Status::StreamEnd {
            break;
        }
    }
    Ok(Piece {
        deflated: out,
        adler: adler2::adler32_slice(text),
        len: text.len(),
        holds,
    })
}

const ADLER_MOD: u64 = 65521;

/// The Adler-32 of `a` followed by `b`, from their checksums and the length of `b`.
///
/// With `A = 1 + Σ bytes` and `B = Σ` of `A` after each byte (both mod 65521), appending `b`
/// (`n` bytes) adds `A_b - 1` to `A`, and to `B` adds `B_b` plus `n · (A_a - 1)`.
fn adler32_combine(a: u32, b: u32, b_len: usize) -> u32 {
    let (a_lo, a_hi) = (u64::from(a & 0xffff), u64::from(a >> 16));
    let (b_lo, b_hi) = (u64::from(b & 0xffff), u64::from(b >> 16));
    let n = (b_len as u64) % ADLER_MOD;
    let lo = (a_lo + b_lo + ADLER_MOD - 1) % ADLER_MOD;
    let hi = (a_hi + b_hi + n * ((a_lo + ADLER_MOD - 1) % ADLER_MOD)) % ADLER_MOD;
    ((hi << 16) | lo) as u32
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn inflate(zlib: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(zlib)
            .read_to_end(&mut out)
            .expect("a valid zlib stream");
        out
    }

    /// JSON shaped like a Proxy spec's virtual host list.
    fn spec(hosts: impl IntoIterator<Item = String>) -> Vec<u8> {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| format!(r#"{{"domains":["{h}"],"name":"{h}","routes":[{{"matchers":[{{"prefix":"/"}}]}}]}}"#))
            .collect();
        format!(
            r#"{{"listeners":[{{"bindAddress":"::","httpListener":{{"virtualHosts":[{}]}}}}]}}"#,
            hosts.join(",")
        )
        .into_bytes()
    }

    fn names(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
        range.map(|i| format!("team-{}-svc-{i}-80", i % 7))
    }

    /// 20,000 virtual hosts, then the same with one more in the middle.
    fn one_host_added() -> (Vec<u8>, Vec<u8>) {
        let before = spec(names(0..20_000));
        let after = spec(
            names(0..10_000)
                .chain(["added-svc-80".to_owned()])
                .chain(names(10_000..20_000)),
        );
        (before, after)
    }

    #[test]
    fn adler32_of_a_concatenation_is_combined_from_its_parts() {
        let text = b"Adler-32 is the sum of sums of the bytes, modulo the largest prime below 2^16";
        for cut in [0, 1, 7, 40, text.len()] {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                adler32_combine(adler2::adler32_slice(a), adler2::adler32_slice(b), b.len()),
                adler2::adler32_slice(text),
                "cut at {cut}"
            );
        }
        let long = vec![0xffu8; 200_000];
        let (a, b) = long.split_at(70_001);
        assert_eq!(
            adler32_combine(adler2::adler32_slice(a), adler2::adler32_slice(b), b.len()),
            adler2::adler32_slice(&long)
        );
    }

    #[test]
    fn the_joined_stream_inflates_to_the_json() {
        for json in [
            Vec::new(),
            b"{}".to_vec(),
            spec(names(0..1)),
            spec(names(0..20_000)),
        ] {
            let zlib = zlib(&json, CUT_EVERY, &mut Pieces::default()).unwrap();
            assert_eq!(inflate(&zlib), json);
        }
    }

    #[test]
    fn a_large_spec_is_cut_into_pieces_at_virtual_hosts() {
        let json = spec(names(0..5_000));
        let pieces: Vec<&[u8]> = pieces(&json, CUT_EVERY).collect();
        assert!(pieces.len() > 3, "{} pieces", pieces.len());
        assert_eq!(pieces.concat(), json);
        for p in &pieces[1..] {
            assert!(
                p.starts_with(b"{\"domains\":[\""),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn a_warm_memo_gives_the_same_bytes_and_keeps_only_the_last_pieces() {
        let (before, after) = one_host_added();
        let mut memo = Pieces::default();
        zlib(&before, CUT_EVERY, &mut memo).unwrap();
        let kept_before = memo.len();
        let warm = zlib(&after, CUT_EVERY, &mut memo).unwrap();
        // The piece with the new host, and the one after it (its dictionary changed).
        assert!(
            memo.compressed() <= 2,
            "{} compressed again",
            memo.compressed()
        );
        assert_eq!(
            warm,
            zlib(&after, CUT_EVERY, &mut Pieces::default()).unwrap()
        );
        assert_eq!(inflate(&warm), after);
        assert_eq!(memo.len(), pieces(&after, CUT_EVERY).count());
        assert!(kept_before > 2);
    }

    #[test]
    fn pieces_compress_about_as_well_as_one_pass() {
        let json = spec(names(0..20_000));
        let joined = zlib(&json, CUT_EVERY, &mut Pieces::default()).unwrap();
        let mut one_pass = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut one_pass, &json).unwrap();
        let one_pass = one_pass.finish().unwrap();
        assert!(pieces(&json, CUT_EVERY).count() > 5);
        // Within 7 % (5.3 % here, with short virtual hosts): what the block headers of the
        // pieces add.
        assert!(
            joined.len() * 100 <= one_pass.len() * 107,
            "{} bytes in pieces, {} in one pass",
            joined.len(),
            one_pass.len()
        );
    }

    #[test]
    fn one_added_host_changes_one_piece_of_text() {
        let (before, after) = one_host_added();
        let old: std::collections::HashSet<&[u8]> = pieces(&before, CUT_EVERY).collect();
        let new: Vec<&[u8]> = pieces(&after, CUT_EVERY).collect();
        assert_eq!(new.iter().filter(|p| !old.contains(*p)).count(), 1);
    }
}
