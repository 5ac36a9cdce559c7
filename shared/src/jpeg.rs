//! Baseline JPEG for the share cards: JFIF, YCbCr with 4:2:0 chroma, the quantisation and
//! Huffman tables of ITU-T T.81 Annex K, the AAN float DCT.
//!
//! Written for one job, many times over: cards that share most of their pixels (the same
//! background and watermark, a different pet in the middle). [`Coefficients`] are a picture's
//! quantised blocks; a [`Patch`] holds the blocks of the 16×16 macro blocks inside a rectangle,
//! computed from that rectangle's pixels alone, and [`Encoder::write_patched`] writes a base with
//! a patch over it. So a card composes and transforms only the pixels its subject touches, and
//! the bytes are the same as composing and transforming all of them. The arithmetic is IEEE `f32` with no fused
//! operations, in a fixed order, so native and wasm32 builds write the same bytes.

use image::RgbImage;

/// Side of a macro block (one MCU: four luma blocks and one block of each chroma channel).
pub const MCU_SIDE: u32 = 16;

/// Zigzag position → natural (row-major) index, walked along the anti-diagonals.
const ZIGZAG: [usize; 64] = {
    let mut order = [0; 64];
    let (mut i, mut s) = (0, 0usize);
    while s < 15 {
        let lo = s.saturating_sub(7);
        let hi = if s < 7 { s } else { 7 };
        let mut k = 0;
        while k <= hi - lo {
            // Even diagonals run up (row falling), odd ones down.
            let row = if s % 2 == 0 { hi - k } else { lo + k };
            order[i] = row * 8 + (s - row);
            i += 1;
            k += 1;
        }
        s += 1;
    }
    order
};

/// Annex K.1, natural order.
#[rustfmt::skip]
const LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K.2, natural order.
#[rustfmt::skip]
const CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
];

/// A Huffman table as DHT writes it: how many codes of each length 1..=16, then the symbols.
struct HuffmanSpec {
    counts: [u8; 16],
    symbols: &'static [u8],
}

/// Annex K.3.1 / K.3.2: DC differences of luma and chroma (categories 0..=11).
const DC_LUMA: HuffmanSpec = HuffmanSpec {
    counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    symbols: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};
const DC_CHROMA: HuffmanSpec = HuffmanSpec {
    counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    symbols: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

/// Annex K.3.3.1: luma AC (run << 4 | size).
#[rustfmt::skip]
const AC_LUMA: HuffmanSpec = HuffmanSpec {
    counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    symbols: &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
};

/// Annex K.3.3.2: chroma AC.
#[rustfmt::skip]
const AC_CHROMA: HuffmanSpec = HuffmanSpec {
    counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    symbols: &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
};

/// Codes by symbol: (code, length); length 0 for symbols the table lacks.
struct HuffmanCodes([(u16, u8); 256]);

impl HuffmanCodes {
    /// The canonical codes of a spec (T.81 Annex C).
    fn new(spec: &HuffmanSpec) -> Self {
        let mut codes = [(0, 0); 256];
        let (mut code, mut k) = (0u16, 0);
        for (len, &count) in (1..=16u8).zip(&spec.counts) {
            for _ in 0..count {
                codes[usize::from(spec.symbols[k])] = (code, len);
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        HuffmanCodes(codes)
    }
}

/// Scale factors of the AAN DCT's outputs: `cos(k·π/16)·√2`, 1 for k = 0.
fn aan_scale(k: usize) -> f64 {
    if k == 0 {
        1.0
    } else {
        (k as f64 * std::f64::consts::PI / 16.0).cos() * std::f64::consts::SQRT_2
    }
}

/// The quantised coefficients of a picture: six blocks per macro block (luma top-left,
/// top-right, bottom-left, bottom-right, then Cb and Cr), macro blocks in raster order, each
/// block in zigzag order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coefficients {
    width: u32,
    height: u32,
    blocks: Vec<[i16; 64]>,
}

impl Coefficients {
    fn mcus(width: u32, height: u32) -> (u32, u32) {
        (width.div_ceil(MCU_SIDE), height.div_ceil(MCU_SIDE))
    }
}

/// The macro blocks a pixel rectangle touches, as ranges of macro block columns and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McuRegion {
    cols: (u32, u32),
    rows: (u32, u32),
}

impl McuRegion {
    /// The macro blocks under the pixels `x..x + w`, `y..y + h` of a `width`×`height` picture
    /// (clipped to it).
    pub fn covering(x: u32, y: u32, w: u32, h: u32, (width, height): (u32, u32)) -> Self {
        let (cols, rows) = Coefficients::mcus(width, height);
        let clip = |a: u32, b: u32, n: u32| (a.min(n), b.min(n).max(a.min(n)));
        McuRegion {
            cols: clip(x / MCU_SIDE, x.saturating_add(w).div_ceil(MCU_SIDE), cols),
            rows: clip(y / MCU_SIDE, y.saturating_add(h).div_ceil(MCU_SIDE), rows),
        }
    }

    /// The pixel rectangle `(x, y, w, h)` of these macro blocks in a `width`×`height` picture:
    /// the pixels [`Encoder::quantise_patch`] reads.
    pub fn pixels(&self, (width, height): (u32, u32)) -> (u32, u32, u32, u32) {
        let (x0, y0) = (self.cols.0 * MCU_SIDE, self.rows.0 * MCU_SIDE);
        let x1 = (self.cols.1 * MCU_SIDE).min(width).max(x0);
        let y1 = (self.rows.1 * MCU_SIDE).min(height).max(y0);
        (x0, y0, x1 - x0, y1 - y0)
    }

    fn contains(&self, col: u32, row: u32) -> bool {
        (self.cols.0..self.cols.1).contains(&col) && (self.rows.0..self.rows.1).contains(&row)
    }

    fn size(&self) -> (u32, u32) {
        (self.cols.1 - self.cols.0, self.rows.1 - self.rows.0)
    }
}

/// The quantised blocks of the macro blocks inside a region of a picture, in raster order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    width: u32,
    height: u32,
    region: McuRegion,
    blocks: Vec<[i16; 64]>,
}

/// Where the pixels a macro block reads are: a buffer holding the rectangle at `origin` of a
/// `size` picture, `stride` pixels a row.
struct Pixels<'a> {
    raw: &'a [u8],
    stride: usize,
    origin: (u32, u32),
    size: (u32, u32),
}

/// Blocks to copy instead of transform: a base, and which macro blocks `(column, row)` have the
/// same pixels as in the base's picture.
pub type Unchanged<'a> = (&'a Coefficients, &'a dyn Fn(u32, u32) -> bool);

/// A JPEG encoder at one quality.
pub struct Encoder {
    /// Quantisation tables (luma, chroma), natural order, as DQT writes them.
    tables: [[u16; 64]; 2],
    /// `1 / (q · scale_row · scale_col · 8)`, zigzag order: one multiply quantises.
    divisors: [[f32; 64]; 2],
    dc: [HuffmanCodes; 2],
    ac: [HuffmanCodes; 2],
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Quality 1..=100 scales the Annex K tables as libjpeg does.
    pub fn new(quality: u8) -> Self {
        let q = u32::from(quality.clamp(1, 100));
        let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
        let table = |base: &[u16; 64]| -> [u16; 64] {
            std::array::from_fn(|i| ((u32::from(base[i]) * scale + 50) / 100).clamp(1, 255) as u16)
        };
        let tables = [table(&LUMA_QUANT), table(&CHROMA_QUANT)];
        let divisors = tables.map(|t| {
            std::array::from_fn(|i| {
                let z = ZIGZAG[i];
                (1.0 / (f64::from(t[z]) * aan_scale(z / 8) * aan_scale(z % 8) * 8.0)) as f32
            })
        });
        Encoder {
            tables,
            divisors,
            dc: [HuffmanCodes::new(&DC_LUMA), HuffmanCodes::new(&DC_CHROMA)],
            ac: [HuffmanCodes::new(&AC_LUMA), HuffmanCodes::new(&AC_CHROMA)],
        }
    }

    /// Encode a picture (at most 65,535 pixels a side).
    pub fn encode(&self, img: &RgbImage) -> Result<Vec<u8>, String> {
        self.write(&self.quantise(img))
    }

    /// The quantised blocks of `img`.
    pub fn quantise(&self, img: &RgbImage) -> Coefficients {
        let (width, height) = img.dimensions();
        let (cols, rows) = Coefficients::mcus(width, height);
        let pixels = Pixels {
            raw: img.as_raw(),
            stride: width as usize,
            origin: (0, 0),
            size: (width, height),
        };
        let mut blocks = vec![[0i16; 64]; (cols * rows * 6) as usize];
        for (i, out) in blocks.chunks_exact_mut(6).enumerate() {
            let (row, col) = (i as u32 / cols, i as u32 % cols);
            self.macro_block(&pixels, col, row, out);
        }
        Coefficients {
            width,
            height,
            blocks,
        }
    }

    /// The quantised blocks of the macro blocks in `region` of a `size` picture, from the
    /// pixels of that region alone: `pixels` is the rectangle [`McuRegion::pixels`] names. With
    /// `same = Some((base, is_same))`, a macro block at `(column, row)` for which `is_same`
    /// holds has the same pixels as in `base`'s picture, and its blocks are copied from there.
    pub fn quantise_patch(
        &self,
        size: (u32, u32),
        region: McuRegion,
        pixels: &RgbImage,
        same: Option<Unchanged<'_>>,
    ) -> Result<Patch, String> {
        if let Some((base, _)) = same
            && (base.width, base.height) != size
        {
            return Err(format!(
                "blocks of a {}×{} picture cannot stand in for a {}×{} one's",
                base.width, base.height, size.0, size.1
            ));
        }
        let (x, y, w, h) = region.pixels(size);
        if pixels.dimensions() != (w, h) {
            return Err(format!(
                "a patch of {w}×{h} pixels was expected, not {}×{}",
                pixels.width(),
                pixels.height()
            ));
        }
        let (pc, pr) = region.size();
        let source = Pixels {
            raw: pixels.as_raw(),
            stride: w as usize,
            origin: (x, y),
            size,
        };
        let mut blocks = vec![[0i16; 64]; (pc * pr * 6) as usize];
        let cols = Coefficients::mcus(size.0, size.1).0;
        for (i, out) in blocks.chunks_exact_mut(6).enumerate() {
            let (row, col) = (region.rows.0 + i as u32 / pc, region.cols.0 + i as u32 % pc);
            match same {
                Some((base, is_same)) if is_same(col, row) => {
                    let at = ((row * cols + col) * 6) as usize;
                    out.copy_from_slice(&base.blocks[at..at + 6]);
                }
                _ => self.macro_block(&source, col, row, out),
            }
        }
        Ok(Patch {
            width: size.0,
            height: size.1,
            region,
            blocks,
        })
    }

    /// Transform and quantise one macro block; edges repeat the picture's last column and row.
    fn macro_block(&self, px: &Pixels<'_>, col: u32, row: u32, out: &mut [[i16; 64]]) {
        let ((w, h), (ox, oy)) = (px.size, px.origin);
        let xs: [usize; 16] =
            std::array::from_fn(|i| ((col * MCU_SIDE + i as u32).min(w - 1) - ox) as usize * 3);
        let mut y = [[0f32; 16]; 16];
        let mut cb = [[0f32; 16]; 16];
        let mut cr = [[0f32; 16]; 16];
        for r in 0..16 {
            let sy = ((row * MCU_SIDE + r as u32).min(h - 1) - oy) as usize;
            let line = &px.raw[sy * px.stride * 3..(sy + 1) * px.stride * 3];
            for (c, &x) in xs.iter().enumerate() {
                let (red, green, blue) = (
                    f32::from(line[x]),
                    f32::from(line[x + 1]),
                    f32::from(line[x + 2]),
                );
                // JFIF's conversion, centred on zero (the DCT's level shift).
                y[r][c] = 0.299 * red + 0.587 * green + 0.114 * blue - 128.0;
                cb[r][c] = -0.168_736 * red - 0.331_264 * green + 0.5 * blue;
                cr[r][c] = 0.5 * red - 0.418_688 * green - 0.081_312 * blue;
            }
        }
        for (i, block) in out[..4].iter_mut().enumerate() {
            let (r0, c0) = ((i / 2) * 8, (i % 2) * 8);
            let mut b: [[f32; 8]; 8] =
                std::array::from_fn(|r| std::array::from_fn(|c| y[r0 + r][c0 + c]));
            self.transform(&mut b, 0, block);
        }
        for (plane, block) in [&cb, &cr].into_iter().zip(&mut out[4..]) {
            let mut b: [[f32; 8]; 8] = std::array::from_fn(|r| {
                std::array::from_fn(|c| {
                    let (r2, c2) = (r * 2, c * 2);
                    (plane[r2][c2] + plane[r2][c2 + 1] + plane[r2 + 1][c2] + plane[r2 + 1][c2 + 1])
                        * 0.25
                })
            });
            self.transform(&mut b, 1, block);
        }
    }

    /// DCT of one block (rows of samples), quantised into zigzag order.
    fn transform(&self, block: &mut [[f32; 8]; 8], table: usize, out: &mut [i16; 64]) {
        // Down the columns (every row is a vector of the eight columns), then along the rows.
        dct_8(block);
        let mut t: [[f32; 8]; 8] = std::array::from_fn(|c| std::array::from_fn(|r| block[r][c]));
        dct_8(&mut t);
        // t[u][v]: horizontal frequency u, vertical frequency v; natural index v·8 + u.
        let div = &self.divisors[table];
        for (i, o) in out.iter_mut().enumerate() {
            let z = ZIGZAG[i];
            let mut v = t[z % 8][z / 8] * div[i];
            if i > 0 {
                // AC values fit 10 bits (size categories 1..=10); only rounding could reach 1024.
                v = v.clamp(-1023.0, 1023.0);
            }
            *o = (v + if v >= 0.0 { 0.5 } else { -0.5 }) as i16;
        }
    }

    /// The JPEG file of quantised blocks.
    pub fn write(&self, coefficients: &Coefficients) -> Result<Vec<u8>, String> {
        self.write_patched(coefficients, None)
    }

    /// The JPEG file of `base`'s blocks, with `patch`'s instead inside its region (a patch of a
    /// picture of the same size).
    pub fn write_patched(
        &self,
        base: &Coefficients,
        patch: Option<&Patch>,
    ) -> Result<Vec<u8>, String> {
        let Coefficients {
            width,
            height,
            blocks,
        } = base;
        if let Some(p) = patch
            && (p.width, p.height) != (*width, *height)
        {
            return Err(format!(
                "a patch of a {}×{} picture cannot go over a {width}×{height} one",
                p.width, p.height
            ));
        }
        let (Ok(w16), Ok(h16)) = (u16::try_from(*width), u16::try_from(*height)) else {
            return Err(format!(
                "{width}×{height} is too large for JPEG (65,535 px a side)"
            ));
        };
        let mut out = Vec::with_capacity(blocks.len() * 12 + 700);
        out.extend_from_slice(&[0xFF, 0xD8]);
        // APP0: JFIF 1.01, no density units, 1:1, no thumbnail.
        out.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
        out.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
        // DQT: both tables, 8-bit, zigzag order.
        out.extend_from_slice(&[0xFF, 0xDB, 0, 132]);
        for (id, table) in self.tables.iter().enumerate() {
            out.push(id as u8);
            out.extend(ZIGZAG.iter().map(|&z| table[z] as u8));
        }
        // SOF0: 8-bit, three components; luma sampled 2×2, chroma 1×1.
        out.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        out.extend_from_slice(&h16.to_be_bytes());
        out.extend_from_slice(&w16.to_be_bytes());
        out.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        // DHT: the four tables.
        for (class_id, spec) in [
            (0x00, &DC_LUMA),
            (0x10, &AC_LUMA),
            (0x01, &DC_CHROMA),
            (0x11, &AC_CHROMA),
        ] {
            let len = 2 + 1 + 16 + spec.symbols.len();
            out.extend_from_slice(&[0xFF, 0xC4]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.push(class_id);
            out.extend_from_slice(&spec.counts);
            out.extend_from_slice(spec.symbols);
        }
        // SOS: all three components interleaved, full spectrum.
        out.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
        let mut bits = BitWriter { out, acc: 0, n: 0 };
        let mut last_dc = [0i16; 3];
        let cols = Coefficients::mcus(*width, *height).0;
        for (m, own) in blocks.chunks_exact(6).enumerate() {
            let (row, col) = (m as u32 / cols, m as u32 % cols);
            let mcu = match patch {
                Some(p) if p.region.contains(col, row) => {
                    let pc = p.region.size().0;
                    let at = (((row - p.region.rows.0) * pc + col - p.region.cols.0) * 6) as usize;
                    &p.blocks[at..at + 6]
                }
                _ => own,
            };
            for (i, block) in mcu.iter().enumerate() {
                let component = i.saturating_sub(3);
                let table = usize::from(i >= 4);
                let diff = block[0].wrapping_sub(last_dc[component]);
                last_dc[component] = block[0];
                self.block(&mut bits, block, diff, table);
            }
        }
        let mut out = bits.finish();
        out.extend_from_slice(&[0xFF, 0xD9]);
        Ok(out)
    }

    fn block(&self, bits: &mut BitWriter, block: &[i16; 64], dc_diff: i16, table: usize) {
        let (dc, ac) = (&self.dc[table].0, &self.ac[table].0);
        let (extra, size) = magnitude(dc_diff);
        let (code, len) = dc[usize::from(size)];
        bits.put(u32::from(code), u32::from(len));
        bits.put(extra, u32::from(size));
        let Some(last) = block.iter().rposition(|&c| c != 0).filter(|&l| l > 0) else {
            let (code, len) = ac[0x00];
            bits.put(u32::from(code), u32::from(len));
            return;
        };
        let mut run = 0;
        for &c in &block[1..=last] {
            if c == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                let (code, len) = ac[0xF0];
                bits.put(u32::from(code), u32::from(len));
                run -= 16;
            }
            let (extra, size) = magnitude(c);
            let (code, len) = ac[(run << 4) | usize::from(size)];
            bits.put(u32::from(code), u32::from(len));
            bits.put(extra, u32::from(size));
            run = 0;
        }
        if last < 63 {
            let (code, len) = ac[0x00];
            bits.put(u32::from(code), u32::from(len));
        }
    }
}

/// A value's size category and its extra bits (negative values one's-complemented).
fn magnitude(v: i16) -> (u32, u8) {
    let a = v.unsigned_abs();
    let size = (16 - a.leading_zeros()) as u8;
    let bits = if v < 0 {
        i32::from(v) - 1
    } else {
        i32::from(v)
    };
    ((bits as u32) & ((1u32 << size) - 1), size)
}

/// Entropy-coded bits, with 0xFF bytes stuffed.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, len: u32) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | u64::from(value & ((1 << len) - 1));
        self.n += len;
        while self.n >= 8 {
            self.n -= 8;
            let byte = (self.acc >> self.n) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
    }

    /// Pad the last byte with one-bits.
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad);
        }
        self.out
    }
}

type Lanes = [f32; 8];

#[inline(always)]
fn add(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|i| a[i] + b[i])
}
#[inline(always)]
fn sub(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|i| a[i] - b[i])
}
#[inline(always)]
fn mul(a: Lanes, k: f32) -> Lanes {
    std::array::from_fn(|i| a[i] * k)
}

/// The AAN forward DCT (as libjpeg's `jfdctflt`) of eight samples, on eight lanes at once:
/// `d[k]` holds sample k of every lane. Outputs are scaled by `aan_scale(k)·8`, which the
/// quantisation divisors undo.
#[inline(always)]
fn dct_8(d: &mut [Lanes; 8]) {
    let tmp0 = add(d[0], d[7]);
    let tmp7 = sub(d[0], d[7]);
    let tmp1 = add(d[1], d[6]);
    let tmp6 = sub(d[1], d[6]);
    let tmp2 = add(d[2], d[5]);
    let tmp5 = sub(d[2], d[5]);
    let tmp3 = add(d[3], d[4]);
    let tmp4 = sub(d[3], d[4]);

    // Even part.
    let tmp10 = add(tmp0, tmp3);
    let tmp13 = sub(tmp0, tmp3);
    let tmp11 = add(tmp1, tmp2);
    let tmp12 = sub(tmp1, tmp2);
    d[0] = add(tmp10, tmp11);
    d[4] = sub(tmp10, tmp11);
    let z1 = mul(add(tmp12, tmp13), 0.707_106_77);
    d[2] = add(tmp13, z1);
    d[6] = sub(tmp13, z1);

    // Odd part.
    let tmp10 = add(tmp4, tmp5);
    let tmp11 = add(tmp5, tmp6);
    let tmp12 = add(tmp6, tmp7);
    let z5 = mul(sub(tmp10, tmp12), 0.382_683_43);
    let z2 = add(mul(tmp10, 0.541_196_1), z5);
    let z4 = add(mul(tmp12, 1.306_563), z5);
    let z3 = mul(tmp11, 0.707_106_77);
    let z11 = add(tmp7, z3);
    let z13 = sub(tmp7, z3);
    d[5] = add(z13, z2);
    d[3] = sub(z13, z2);
    d[1] = add(z11, z4);
    d[7] = sub(z11, z4);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .expect("a decodable JPEG")
            .to_rgb8()
    }

    fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
        let se: f64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let mse = se / a.as_raw().len() as f64;
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }

    /// Smooth colour ramps with a few hard edges, at an odd size (partial macro blocks).
    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let edge = if (x / 37 + y / 23) % 3 == 0 { 60 } else { 0 };
            image::Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                (((x + y) * 97 / (w + h)) as u8).saturating_add(edge),
            ])
        })
    }

    #[test]
    fn tables_are_complete() {
        let mut seen = [false; 64];
        for &z in &ZIGZAG {
            assert!(!seen[z], "zigzag repeats {z}");
            seen[z] = true;
        }
        assert_eq!(&ZIGZAG[..10], &[0, 1, 8, 16, 9, 2, 3, 10, 17, 24]);
        for spec in [&DC_LUMA, &DC_CHROMA, &AC_LUMA, &AC_CHROMA] {
            let total: usize = spec.counts.iter().map(|&c| usize::from(c)).sum();
            assert_eq!(total, spec.symbols.len());
            let mut symbols = spec.symbols.to_vec();
            symbols.sort_unstable();
            symbols.dedup();
            assert_eq!(symbols.len(), total, "a symbol twice");
        }
        // Every (run, size) an AC coefficient can need, plus EOB and ZRL.
        for spec in [&AC_LUMA, &AC_CHROMA] {
            assert_eq!(spec.symbols.len(), 162);
            for run in 0..16u8 {
                for size in 1..=10u8 {
                    assert!(spec.symbols.contains(&((run << 4) | size)));
                }
            }
        }
    }

    #[test]
    fn decodes_close_to_the_source_at_every_size() {
        for (w, h) in [(1, 1), (8, 8), (17, 9), (1200, 630), (333, 517)] {
            let img = picture(w, h);
            let bytes = Encoder::new(85).encode(&img).unwrap();
            let back = decode(&bytes);
            assert_eq!(back.dimensions(), (w, h));
            if w > 16 {
                let p = psnr(&img, &back);
                assert!(p > 32.0, "{w}×{h}: PSNR {p:.1} dB");
            }
        }
    }

    #[test]
    fn quality_trades_size_for_fidelity() {
        let img = picture(400, 300);
        let (low, high) = (
            Encoder::new(40).encode(&img).unwrap(),
            Encoder::new(95).encode(&img).unwrap(),
        );
        assert!(low.len() < high.len());
        assert!(psnr(&img, &decode(&low)) < psnr(&img, &decode(&high)));
    }

    #[test]
    fn a_patch_from_its_pixels_alone_gives_the_same_bytes() {
        // Odd sizes, so the last macro blocks repeat the edge pixels.
        for (w, h) in [(300, 200), (301, 203)] {
            let mut card = picture(w, h);
            let enc = Encoder::new(85);
            let mut base_coefficients = enc.quantise(&card);
            for (x, y, rw, rh) in [(100, 50, 70, 40), (250, 150, 400, 400), (0, 0, w, h)] {
                // Change a rectangle; everything outside it stays the base's.
                for py in y..(y + rh).min(h) {
                    for px in x..(x + rw).min(w) {
                        card.put_pixel(px, py, image::Rgb([200, (px % 256) as u8, 10]));
                    }
                }
                let region = McuRegion::covering(x, y, rw, rh, (w, h));
                let (rx, ry, pw, ph) = region.pixels((w, h));
                let pixels = image::imageops::crop_imm(&card, rx, ry, pw, ph).to_image();
                let patch = enc.quantise_patch((w, h), region, &pixels, None).unwrap();
                let patched = enc.write_patched(&base_coefficients, Some(&patch)).unwrap();
                assert_eq!(patched, enc.encode(&card).unwrap(), "{w}×{h} at {x},{y}");
                // Macro blocks the change missed may be copied from the base: the same bytes.
                let touched = McuRegion::covering(x, y, rw, rh, (w, h));
                let wider = McuRegion::covering(
                    x.saturating_sub(40),
                    y.saturating_sub(40),
                    rw + 80,
                    rh + 80,
                    (w, h),
                );
                let (wx, wy, ww, wh) = wider.pixels((w, h));
                let around = image::imageops::crop_imm(&card, wx, wy, ww, wh).to_image();
                let untouched = |col, row| !touched.contains(col, row);
                let copied = enc
                    .quantise_patch(
                        (w, h),
                        wider,
                        &around,
                        Some((&base_coefficients, &untouched)),
                    )
                    .unwrap();
                assert_eq!(
                    enc.write_patched(&base_coefficients, Some(&copied))
                        .unwrap(),
                    enc.encode(&card).unwrap()
                );
                // A patch that misses the change would not: the check above can fail.
                let wrong = McuRegion::covering(0, 0, 16, 16, (w, h));
                let (_, _, ww, wh) = wrong.pixels((w, h));
                let corner = image::imageops::crop_imm(&card, 0, 0, ww, wh).to_image();
                let stale = enc.quantise_patch((w, h), wrong, &corner, None).unwrap();
                if (x, y) != (0, 0) {
                    assert_ne!(
                        enc.write_patched(&base_coefficients, Some(&stale)).unwrap(),
                        enc.encode(&card).unwrap()
                    );
                }
                base_coefficients = enc.quantise(&card);
            }
        }
    }

    #[test]
    fn a_patch_must_fit() {
        let enc = Encoder::new(85);
        let base = enc.quantise(&picture(64, 64));
        let region = McuRegion::covering(0, 0, 20, 20, (64, 64));
        let patch = |size, px: &RgbImage, same| enc.quantise_patch(size, region, px, same);
        assert!(patch((64, 64), &picture(20, 20), None).is_err());
        let other = patch((48, 48), &picture(32, 32), None).unwrap();
        assert!(enc.write_patched(&base, Some(&other)).is_err());
        let always = |_, _| true;
        assert!(patch((48, 48), &picture(32, 32), Some((&base, &always))).is_err());
    }

    #[test]
    fn as_small_and_faithful_as_jpeg_encoder_on_photos() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/u2netp/");
        for name in ["chelsea.png", "astronaut.png"] {
            let photo = image::open(format!("{dir}{name}")).unwrap().to_rgb8();
            let ours = Encoder::new(85).encode(&photo).unwrap();
            let mut theirs = Vec::new();
            jpeg_encoder::Encoder::new(&mut theirs, 85)
                .encode(
                    photo.as_raw(),
                    photo.width() as u16,
                    photo.height() as u16,
                    jpeg_encoder::ColorType::Rgb,
                )
                .unwrap();
            let (p_ours, p_theirs) = (psnr(&photo, &decode(&ours)), psnr(&photo, &decode(&theirs)));
            assert!(
                p_ours > p_theirs - 0.3,
                "{name}: PSNR {p_ours:.2} vs {p_theirs:.2} dB"
            );
            assert!(
                ours.len() * 100 < theirs.len() * 105,
                "{name}: {} vs {} bytes",
                ours.len(),
                theirs.len()
            );
        }
    }

    #[test]
    fn stuffs_ff_bytes_and_codes_large_values() {
        // Grey noise (chroma subsampling loses nothing of it) makes large coefficients and many
        // 0xFF bytes in the entropy-coded data.
        let mut state = 12345u32;
        let noise = RgbImage::from_fn(64, 48, |_, _| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let v = (state >> 16) as u8;
            image::Rgb([v, v, v])
        });
        let bytes = Encoder::new(100).encode(&noise).unwrap();
        let scan = &bytes[bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap()..];
        assert!(
            scan.windows(2).any(|w| w == [0xFF, 0x00]),
            "no stuffed byte"
        );
        let p = psnr(&noise, &decode(&bytes));
        assert!(p > 40.0, "PSNR {p:.1} dB");
    }
}
