//! Fuzzes mask decoding (png, paletted/grayscale, all bit depths), image decoding (JPEG/PNG via `image`),
//! the truncation check and split-list parsing. Decoded masks must survive an encode → decode round trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let p = Path::new("fuzz-input");
    if let Ok(m) = data::io::decode_mask(bytes, p) {
        assert_eq!(m.mask.data.len(), m.mask.width * m.mask.height);
        if m.mask.width > 0 && m.mask.height > 0 {
            let enc = data::io::encode_paletted_png(&m.mask, &data::palette::voc_palette()).expect("encode");
            let back = data::io::decode_mask(&enc, p).expect("re-decode");
            assert_eq!(back.mask, m.mask);
        }
    }
    if let Ok(img) = data::io::decode_image(bytes, p) {
        assert_eq!(img.data.len(), img.width * img.height * 3);
    }
    let _ = data::check::has_trailer(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(entries) = data::splits::parse_split(text, p) {
            assert!(entries.iter().all(|e| !e.image.is_empty() && !e.image.starts_with('/')));
        }
        let _ = data::splits::parse_image_set(text, p);
    }
});
