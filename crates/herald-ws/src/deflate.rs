//! permessage-deflate (RFC 7692): negotiation of the extension parameters and the compressor and
//! decompressor that the connection uses.
//!
//! Fan-out changes the usual trade-off. A compressor with context takeover keeps a 256 KiB
//! window per connection and must compress every message once per recipient. With
//! `server_no_context_takeover` (which a server may always answer with) every message is
//! compressed on its own, so all recipients that negotiated the same window size share one
//! compressed frame ([`crate::Message`] caches it) and idle connections hold no compressor.
//! Compressors and decompressors used that way live in thread-local storage and are reset after
//! each message.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{CloseCode, ProtocolError};

/// The trailer a sync flush ends with; RFC 7692 §7.2.1 removes it from each message and the
/// receiver appends it back before inflating.
const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Server policy for permessage-deflate.
#[derive(Clone, Debug)]
pub struct DeflateConfig {
    /// Accept the extension at all.
    pub enabled: bool,
    /// Always answer with `server_no_context_takeover`, so that a message is compressed once
    /// for all recipients with the same window size (see the module docs). When false, the
    /// server keeps its context unless the client asks otherwise.
    pub server_no_context_takeover: bool,
    /// Answer with `client_no_context_takeover` when the client says it supports it, so the
    /// connection needs no decompressor between messages.
    pub client_no_context_takeover: bool,
    /// Largest compressor window the server uses (9–15).
    pub server_max_window_bits: u8,
    /// Compression level 0–9.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (which permessage-deflate allows per
    /// message); compressing a few bytes costs more than it saves.
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: true,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            level: 1,
            min_size: 128,
        }
    }
}

/// The parameters agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// Window the server compresses with. 8 means "never compress": zlib cannot produce a
    /// 256-byte window, and sending messages uncompressed is always allowed.
    pub server_max_window_bits: u8,
    /// Window the client compresses with (15 when not negotiated).
    pub client_max_window_bits: u8,
    pub level: u32,
    pub min_size: usize,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` response value for these parameters.
    pub fn response_header(&self, offer: &Offer) -> String {
        let mut out = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if offer.server_max_window_bits.is_some() {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if offer.client_max_window_bits.is_some() {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        out
    }

    /// Whether messages on this connection are compressed once for every connection with the
    /// same window (true) or with the connection's own context (false).
    pub fn shares_compression(&self) -> bool {
        self.server_no_context_takeover
    }
}

/// One `permessage-deflate` offer from a client's `Sec-WebSocket-Extensions` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: the client supports the parameter but named no value.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Parses all extension offers in the header values and returns the `permessage-deflate` offers
/// that are well formed, in the client's order of preference. Malformed offers are skipped, as
/// RFC 7692 §5 asks ("decline an offer with an invalid parameter").
pub fn parse_offers<'a>(headers: impl Iterator<Item = &'a [u8]>) -> Vec<Offer> {
    let mut offers = Vec::new();
    for value in headers {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for extension in split_unquoted(value, ',') {
            let mut parts = split_unquoted(extension, ';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            if let Some(offer) = parse_offer(parts) {
                offers.push(offer);
            }
        }
    }
    offers
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for param in params {
        if param.is_empty() {
            return None;
        }
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        let index = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None; // a parameter named twice invalidates the offer
        }
        match index {
            0 if value.is_none() => offer.server_no_context_takeover = true,
            1 if value.is_none() => offer.client_no_context_takeover = true,
            2 => offer.server_max_window_bits = Some(window_bits(value?)?),
            3 => {
                offer.client_max_window_bits = Some(match value {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            _ => return None,
        }
    }
    Some(offer)
}

fn window_bits(value: &str) -> Option<u8> {
    // Only plain decimal digits, no sign or leading zeros (RFC 7692 §7.1.2).
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                pieces.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&s[start..]);
    pieces.into_iter()
}

/// Chooses the parameters for the first offer the server can accept, or `None` to decline the
/// extension.
pub fn negotiate(offers: &[Offer], config: &DeflateConfig) -> Option<(DeflateParams, Offer)> {
    if !config.enabled {
        return None;
    }
    let offer = *offers.first()?;
    let server_bits = offer
        .server_max_window_bits
        .unwrap_or(15)
        .min(config.server_max_window_bits.clamp(9, 15));
    let client_bits = match offer.client_max_window_bits {
        Some(Some(bits)) => bits,
        _ => 15,
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover
            || server_bits == 8,
        client_no_context_takeover: offer.client_no_context_takeover
            && config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        level: config.level.min(9),
        min_size: config.min_size,
    };
    Some((params, offer))
}

/// Compresses `input` as one permessage-deflate message, appending to `out` (trailer removed).
pub(crate) fn compress_into(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let start_in = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start_in) as usize;
        out.reserve(input.len() / 2 + 64);
        let before_out = out.len();
        // Errors here can only come from a misuse of the stream, which this function rules out;
        // treat one defensively as "nothing more to write".
        let status = compress.compress_vec(&input[consumed..], out, FlushCompress::Sync);
        let done_in = (compress.total_in() - start_in) as usize == input.len();
        // A sync flush is complete when all input is consumed and zlib did not fill the output.
        if status.is_err() || (done_in && out.len() < out.capacity()) {
            break;
        }
        if out.len() == before_out && done_in {
            break;
        }
    }
    if out.ends_with(&SYNC_TRAILER) {
        out.truncate(out.len() - SYNC_TRAILER.len());
    }
}

/// Inflates one permessage-deflate message into `out`, failing with close code 1009 when the
/// result would exceed `limit` bytes and 1007 when the data is not valid deflate.
pub(crate) fn decompress_into(
    decompress: &mut Decompress,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    for chunk in [input, &SYNC_TRAILER[..]] {
        let start_in = decompress.total_in();
        loop {
            let consumed = (decompress.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(ProtocolError::new(
                        CloseCode::TOO_BIG,
                        "decompressed message too big",
                    ));
                }
                out.reserve(
                    (out.len().max(256))
                        .min(limit + 1 - out.len().min(limit))
                        .max(64),
                );
            }
            let before_out = out.len();
            let status = decompress
                .decompress_vec(&chunk[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| {
                    ProtocolError::new(CloseCode::INVALID_PAYLOAD, "invalid deflate data")
                })?;
            if out.len() > limit {
                return Err(ProtocolError::new(
                    CloseCode::TOO_BIG,
                    "decompressed message too big",
                ));
            }
            let done_in = (decompress.total_in() - start_in) as usize == chunk.len();
            if status == Status::StreamEnd {
                // A final deflate block ends the stream; nothing may follow in this message.
                break;
            }
            if done_in && out.len() < out.capacity() {
                break;
            }
            if !done_in && out.len() == before_out && out.len() < out.capacity() {
                return Err(ProtocolError::new(
                    CloseCode::INVALID_PAYLOAD,
                    "invalid deflate data",
                ));
            }
        }
    }
    Ok(())
}

/// A compressor with the given window, new or reset.
pub(crate) fn new_compressor(window_bits: u8, level: u32) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits.clamp(9, 15))
}

/// A raw-deflate decompressor. A 15-bit window decodes streams made with any smaller window.
pub(crate) fn new_decompressor() -> Decompress {
    Decompress::new_with_window_bits(false, 15)
}

thread_local! {
    /// Shared compressors for no-context-takeover messages, one per window size 9–15.
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([None, None, None, None, None, None, None]) };
    /// Shared decompressor for clients that compress without context takeover.
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses one message without context, with a thread-local compressor.
pub(crate) fn compress_shared(window_bits: u8, level: u32, input: &[u8], out: &mut Vec<u8>) {
    let bits = window_bits.clamp(9, 15);
    COMPRESSORS.with(|cell| {
        let mut slots = cell.borrow_mut();
        let slot = &mut slots[usize::from(bits - 9)];
        let compress = slot.get_or_insert_with(|| new_compressor(bits, level));
        compress_into(compress, input, out);
        compress.reset();
    });
}

/// Inflates one message without context, with a thread-local decompressor.
pub(crate) fn decompress_shared(
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompress = slot.get_or_insert_with(new_decompressor);
        let result = decompress_into(decompress, input, limit, out);
        decompress.reset(false);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(header: &str) -> Vec<Offer> {
        parse_offers(std::iter::once(header.as_bytes()))
    }

    #[test]
    fn parses_parameters_and_skips_invalid_offers() {
        let parsed = offers(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             permessage-deflate; server_max_window_bits=16, x-webkit-deflate-frame, \
             permessage-deflate; client_no_context_takeover; client_no_context_takeover, \
             permessage-deflate; server_no_context_takeover; client_max_window_bits=\"9\"",
        );
        assert_eq!(
            parsed,
            vec![
                Offer {
                    server_max_window_bits: Some(10),
                    client_max_window_bits: Some(None),
                    ..Offer::default()
                },
                Offer {
                    server_no_context_takeover: true,
                    client_max_window_bits: Some(Some(9)),
                    ..Offer::default()
                },
            ]
        );
    }

    #[test]
    fn negotiation_honours_the_offer_and_the_policy() {
        let config = DeflateConfig::default();
        let (params, offer) = negotiate(
            &offers("permessage-deflate; server_max_window_bits=8"),
            &config,
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 8);
        assert!(params.server_no_context_takeover);
        assert_eq!(
            params.response_header(&offer),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        );
        let (params, offer) = negotiate(
            &offers("permessage-deflate; client_no_context_takeover; client_max_window_bits"),
            &config,
        )
        .unwrap();
        assert!(params.client_no_context_takeover);
        assert_eq!(
            params.response_header(&offer),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             client_max_window_bits=15"
        );
        let disabled = DeflateConfig {
            enabled: false,
            ..config
        };
        assert!(negotiate(&offers("permessage-deflate"), &disabled).is_none());
    }

    #[test]
    fn round_trips_through_compress_and_decompress() {
        let input: Vec<u8> = b"hello hello hello fan-out ".repeat(200);
        let mut compressed = Vec::new();
        compress_shared(15, 1, &input, &mut compressed);
        assert!(compressed.len() < input.len() / 4);
        let mut out = Vec::new();
        decompress_shared(&compressed, 1 << 20, &mut out).unwrap();
        assert_eq!(out, input);
        // The decompressed-size limit holds.
        let mut out = Vec::new();
        let err = decompress_shared(&compressed, 100, &mut out).unwrap_err();
        assert_eq!(err.code, CloseCode::TOO_BIG);
        // Empty messages survive too.
        let mut compressed = Vec::new();
        compress_shared(9, 1, b"", &mut compressed);
        let mut out = Vec::new();
        decompress_shared(&compressed, 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn garbage_is_invalid_payload_not_a_panic() {
        let mut out = Vec::new();
        let err = decompress_shared(&[0xFF, 0xFF, 0xFF, 0x00, 0x12], 1 << 20, &mut out);
        assert!(err.is_err());
    }
}
