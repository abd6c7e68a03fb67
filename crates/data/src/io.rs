//! Decoding and encoding images and index masks.
//!
//! Masks are always read with the `png` crate without palette expansion, so paletted VOC masks yield their
//! **indices** (the `image` crate would return RGB colours). Images go through `image` and become RGB8.

use std::io::Cursor;
use std::path::Path;

use crate::error::{Error, Result};

/// An 8-bit RGB image, row-major HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

/// An 8-bit label mask, row-major HW (255 = ignore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width` label values.
    pub data: Vec<u8>,
}

/// A decoded mask plus the PLTE chunk of the file, if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMask {
    /// The index values.
    pub mask: Mask,
    /// Palette entries (RGB triples) from the file's PLTE chunk.
    pub palette: Option<Vec<[u8; 3]>>,
}

/// Reads a whole file, naming it in the error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Decodes JPEG/PNG bytes to RGB8; `path` is only used in error messages.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::decode(path, e.to_string()))?;
    let img = reader.decode().map_err(|e| Error::decode(path, e.to_string()))?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage { width: w as usize, height: h as usize, data: rgb.into_raw() })
}

/// Reads and decodes an image file to RGB8.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    decode_image(&read_bytes(path)?, path)
}

/// Reads only the header of an image file to get `(width, height)`.
pub fn image_dimensions(path: &Path) -> Result<(usize, usize)> {
    let (w, h) = image::image_dimensions(path).map_err(|e| Error::decode(path, e.to_string()))?;
    Ok((w as usize, h as usize))
}

/// Largest mask accepted (pixels): 2^28, i.e. 16384×16384; larger headers are rejected before allocating.
pub const MAX_MASK_PIXELS: u64 = 1 << 28;

/// Decodes an index mask (8-bit paletted or grayscale PNG; 1/2/4-bit depths are unpacked, 16-bit is an error).
pub fn decode_mask(bytes: &[u8], path: &Path) -> Result<DecodedMask> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| Error::decode(path, e.to_string()))?;
    let (hw, hh) = (reader.info().width as u64, reader.info().height as u64);
    if hw * hh > MAX_MASK_PIXELS {
        let msg = format!("mask header claims {hw}x{hh} pixels, more than the {MAX_MASK_PIXELS} allowed");
        return Err(Error::decode(path, msg));
    }
    let size = reader.output_buffer_size().ok_or_else(|| Error::decode(path, "image too large for this platform"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::decode(path, e.to_string()))?;
    match info.color_type {
        png::ColorType::Indexed | png::ColorType::Grayscale => {}
        other => {
            return Err(Error::invalid(
                path,
                format!("mask has colour type {other:?}; expected an index (paletted or grayscale) PNG"),
            ))
        }
    }
    let bits = match info.bit_depth {
        png::BitDepth::One => 1,
        png::BitDepth::Two => 2,
        png::BitDepth::Four => 4,
        png::BitDepth::Eight => 8,
        png::BitDepth::Sixteen => return Err(Error::invalid(path, "16-bit masks are not supported")),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let data = unpack_rows(&buf, w, h, info.line_size, bits);
    let palette = reader.info().palette.as_ref().map(|p| p.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect());
    Ok(DecodedMask { mask: Mask { width: w, height: h, data }, palette })
}

/// Reads and decodes a mask file (see [`decode_mask`]).
pub fn read_mask(path: &Path) -> Result<DecodedMask> {
    decode_mask(&read_bytes(path)?, path)
}

/// Unpacks `bits`-per-sample rows (MSB first, as PNG stores them) into one byte per pixel.
fn unpack_rows(buf: &[u8], w: usize, h: usize, line_size: usize, bits: usize) -> Vec<u8> {
    if bits == 8 {
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            out.extend_from_slice(&buf[y * line_size..y * line_size + w]);
        }
        return out;
    }
    let per_byte = 8 / bits;
    let maskv = (1u8 << bits) - 1;
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * line_size..(y + 1) * line_size];
        for x in 0..w {
            let byte = row[x / per_byte];
            let shift = 8 - bits * (x % per_byte + 1);
            out.push((byte >> shift) & maskv);
        }
    }
    out
}

/// Encodes a mask as an 8-bit paletted PNG with the given 256-entry palette.
pub fn encode_paletted_png(mask: &Mask, palette: &[[u8; 3]; 256]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let pal: Vec<u8> = palette.iter().flatten().copied().collect();
    let mut enc = png::Encoder::new(&mut out, mask.width as u32, mask.height as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(pal);
    let err = |e: png::EncodingError| Error::Config(format!("PNG encoding failed: {e}"));
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(&mask.data).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Writes a mask as an 8-bit paletted PNG (VOC style), whole or not at all: the bytes go to a temporary file
/// beside `path`, which is then renamed over it, so a killed process leaves no half-written mask.
pub fn write_paletted_png(path: &Path, mask: &Mask, palette: &[[u8; 3]; 256]) -> Result<()> {
    let bytes = encode_paletted_png(mask, palette)?;
    core_seg::files::write_atomic(path, &bytes).map_err(|e| Error::io(path, e))
}

/// Writes a mask as an 8-bit grayscale PNG (Cityscapes / SegmentationClassAug style), whole or not at all.
pub fn write_gray_png(path: &Path, mask: &Mask) -> Result<()> {
    let size = (mask.width as u32, mask.height as u32);
    write_encoded(path, &mask.data, size, image::ExtendedColorType::L8, image::ImageFormat::Png)
}

/// Writes an RGB image, whole or not at all; the format follows the extension (`.png` lossless, `.jpg` at the
/// JPEG encoder's default quality, 75).
pub fn write_rgb(path: &Path, img: &RgbImage) -> Result<()> {
    let format = image::ImageFormat::from_path(path).map_err(|e| Error::invalid(path, format!("cannot write: {e}")))?;
    write_encoded(path, &img.data, (img.width as u32, img.height as u32), image::ExtendedColorType::Rgb8, format)
}

/// Encodes `data` in memory, then replaces `path` by it atomically (`core_seg::files::write_atomic`).
fn write_encoded(
    path: &Path,
    data: &[u8],
    (width, height): (u32, u32),
    color: image::ExtendedColorType,
    format: image::ImageFormat,
) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut bytes, data, width, height, color, format)
        .map_err(|e| Error::invalid(path, format!("cannot encode: {e}")))?;
    core_seg::files::write_atomic(path, bytes.get_ref()).map_err(|e| Error::io(path, e))
}

/// Resizes an image by `scale` (sides rounded, at least 1 px) with a triangle filter, widened when downscaling
/// (as PIL's `BILINEAR`).
pub fn resize_image(img: &RgbImage, scale: f64) -> RgbImage {
    let side = |n: usize| ((n as f64 * scale).round() as u32).max(1);
    let (w, h) = (side(img.width), side(img.height));
    let src = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone());
    let Some(src) = src else {
        return img.clone();
    };
    let out = image::imageops::resize(&src, w, h, image::imageops::FilterType::Triangle);
    RgbImage { width: w as usize, height: h as usize, data: out.into_raw() }
}

/// Resizes a mask to `width`×`height` by nearest neighbour (pixel centres, as PIL's `NEAREST`): labels stay labels.
pub fn resize_mask_nearest(mask: &Mask, width: usize, height: usize) -> Mask {
    let src = |o: usize, n: usize, m: usize| (((o as f64 + 0.5) * m as f64 / n as f64) as usize).min(m - 1);
    let xs: Vec<usize> = (0..width).map(|x| src(x, width, mask.width)).collect();
    let mut data = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = src(y, height, mask.height) * mask.width;
        data.extend(xs.iter().map(|&x| mask.data[row + x]));
    }
    Mask { width, height, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paletted mask written over an existing file reads back as the same indices and palette, and no
    /// temporary file is left beside it.
    #[test]
    fn paletted_png_replaces_the_file_whole() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("m.png");
        std::fs::write(&path, b"an older, unrelated file").map_err(|e| Error::io(&path, e))?;
        let mut palette = [[0u8; 3]; 256];
        palette[3] = [10, 20, 30];
        let mask = Mask { width: 3, height: 2, data: vec![0, 1, 2, 3, 255, 7] };
        write_paletted_png(&path, &mask, &palette)?;
        let back = read_mask(&path)?;
        assert_eq!(back.mask, mask);
        assert_eq!(back.palette.as_ref().and_then(|p| p.get(3).copied()), Some([10, 20, 30]));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["m.png"]);
        Ok(())
    }

    /// Gray masks and RGB images replace older files whole, read back as written (PNG lossless, JPEG close), leave
    /// no temporary file, and an extension with no encoder is an error naming the file.
    #[test]
    fn gray_and_rgb_writes_replace_the_file_whole() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (mask_path, png_path, jpg_path) =
            (dir.path().join("m.png"), dir.path().join("i.png"), dir.path().join("i.jpg"));
        std::fs::write(&mask_path, b"an older, unrelated file").map_err(|e| Error::io(&mask_path, e))?;
        let mask = Mask { width: 3, height: 2, data: vec![0, 1, 2, 3, 255, 7] };
        write_gray_png(&mask_path, &mask)?;
        assert_eq!(read_mask(&mask_path)?.mask, mask);
        let data: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 37 % 200) as u8 + 20).collect();
        let img = RgbImage { width: 16, height: 8, data };
        write_rgb(&png_path, &img)?;
        assert_eq!(read_image(&png_path)?, img);
        write_rgb(&jpg_path, &img)?;
        let jpg = read_image(&jpg_path)?;
        assert_eq!((jpg.width, jpg.height), (16, 8));
        let mean_err =
            jpg.data.iter().zip(&img.data).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>() / img.data.len() as f64;
        assert!(mean_err < 25.0, "JPEG round trip mean error {mean_err} (15.1 at quality 75)");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(names, ["i.jpg", "i.png", "m.png"]);
        let bad = dir.path().join("i.xyz");
        let err = write_rgb(&bad, &img).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("i.xyz"), "{err}");
        assert!(!bad.exists());
        Ok(())
    }
}
