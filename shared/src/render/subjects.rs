//! Share-ready card subjects ([`CardSubjects`]): a cut-out already fitted to each card size,
//! and the file they are stored as.

use fast_image_resize::Resizer;
use image::{DynamicImage, RgbaImage};
use sha2::{Digest, Sha256};

use super::{Background, CARD_SIZES, RenderOptions, pipeline::subject_size, raster::resize_rgba};

/// A cut-out made share-ready: its subject already fitted to each card size. A card made from
/// it is only composed and encoded (no decoding of the whole picture, no resizing), with the
/// same bytes as a card made from the picture. gpu-server stores one beside each result
/// ([`crate::api::keys::card_subjects`]); the Worker renders the result's cards from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSubjects {
    /// SHA-256 of the encoded picture (the stored result) they were made from.
    picture: [u8; 32],
    /// The cut-out's own size.
    pub(super) source: (u32, u32),
    /// One per [`CARD_SIZES`], in that order (`None`: not read, see [`Self::from_bytes_for`]).
    pub(super) subjects: Vec<Option<RgbaImage>>,
}

/// The first bytes of a stored [`CardSubjects`].
const CARD_SUBJECTS_MAGIC: &[u8; 8] = b"PCCARDS1";

impl CardSubjects {
    /// The subjects of a cut-out, `source`, which `encoded` (a lossless file) decodes to; `None`
    /// for a picture with no transparency (a photo, laid out differently).
    pub fn new(source: &DynamicImage, encoded: &[u8]) -> Result<Option<Self>, String> {
        let DynamicImage::ImageRgba8(rgba) = source else {
            return Ok(None);
        };
        if !rgba.pixels().any(|p| p.0[3] < 255) {
            return Ok(None);
        }
        let mut resizer = Resizer::new();
        let subjects = CARD_SIZES
            .iter()
            .map(|&card| {
                let (fw, fh) = subject_size(rgba.dimensions(), card, true);
                let mut subject = resize_rgba(&mut resizer, rgba, fw, fh)?;
                // Invisible pixels compress better blank; `over` never reads them.
                for p in subject.pixels_mut().filter(|p| p.0[3] == 0) {
                    p.0 = [0; 4];
                }
                Ok(Some(subject))
            })
            .collect::<Result<_, String>>()?;
        Ok(Some(CardSubjects {
            picture: Sha256::digest(encoded).into(),
            source: rgba.dimensions(),
            subjects,
        }))
    }

    /// Whether these are the subjects of the picture stored as `encoded`.
    pub fn are_of(&self, encoded: &[u8]) -> bool {
        self.picture == <[u8; 32]>::from(Sha256::digest(encoded))
    }

    /// The stored form: a magic, the picture's digest, the source's size, then each subject's
    /// size, its RGBA pixels as one LZ4 block and that block's CRC-32 (all of them: subjects
    /// read partly cannot be written back).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        out.extend_from_slice(CARD_SUBJECTS_MAGIC);
        out.extend_from_slice(&self.picture);
        out.extend_from_slice(&self.source.0.to_le_bytes());
        out.extend_from_slice(&self.source.1.to_le_bytes());
        for (s, card) in self.subjects.iter().zip(CARD_SIZES) {
            let Some(s) = s else {
                return Err(format!(
                    "the {}×{} card's subject was not read",
                    card.0, card.1
                ));
            };
            let packed = lz4_flex::block::compress(s.as_raw());
            out.extend_from_slice(&s.width().to_le_bytes());
            out.extend_from_slice(&s.height().to_le_bytes());
            out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            out.extend_from_slice(&packed);
            out.extend_from_slice(&crc32fast::hash(&packed).to_le_bytes());
        }
        Ok(out)
    }

    /// Reads [`Self::to_bytes`]. Every size is checked against the cards' own before anything
    /// is allocated, so a damaged or forged file costs at most the cards' pixels.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Self::from_bytes_for(bytes, &CARD_SIZES)
    }

    /// [`Self::from_bytes`], unpacking only the subjects of the card sizes in `cards`.
    pub fn from_bytes_for(bytes: &[u8], cards: &[(u32, u32)]) -> Result<Self, String> {
        let bad = |why: &str| format!("not a card subjects file: {why}");
        let mut rest = bytes
            .strip_prefix(CARD_SUBJECTS_MAGIC.as_slice())
            .ok_or_else(|| bad("no magic"))?;
        fn take<'b>(rest: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head)
        }
        fn word(rest: &mut &[u8]) -> Option<u32> {
            take(rest, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        let picture: [u8; 32] = take(&mut rest, 32)
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| bad("cut short"))?;
        let source = (
            word(&mut rest).ok_or_else(|| bad("cut short"))?,
            word(&mut rest).ok_or_else(|| bad("cut short"))?,
        );
        if source.0 == 0 || source.1 == 0 {
            return Err(bad("an empty source"));
        }
        let mut subjects = Vec::with_capacity(CARD_SIZES.len());
        for card in CARD_SIZES {
            let (Some(w), Some(h), Some(len)) = (word(&mut rest), word(&mut rest), word(&mut rest))
            else {
                return Err(bad("cut short"));
            };
            if (w, h) != subject_size(source, card, true) {
                return Err(bad("a subject of the wrong size"));
            }
            let packed = take(&mut rest, len as usize).ok_or_else(|| bad("cut short"))?;
            let crc = word(&mut rest).ok_or_else(|| bad("cut short"))?;
            if !cards.contains(&card) {
                subjects.push(None);
                continue;
            }
            if crc32fast::hash(packed) != crc {
                return Err(bad("damaged (checksum)"));
            }
            let mut pixels = vec![0u8; w as usize * h as usize * 4];
            let n = lz4_flex::block::decompress_into(packed, &mut pixels)
                .map_err(|e| bad(&e.to_string()))?;
            if n != pixels.len() {
                return Err(bad("a subject cut short"));
            }
            subjects.push(Some(
                RgbaImage::from_raw(w, h, pixels).ok_or_else(|| bad("pixels"))?,
            ));
        }
        if !rest.is_empty() {
            return Err(bad("bytes left over"));
        }
        Ok(CardSubjects {
            picture,
            source,
            subjects,
        })
    }

    /// The subjects stored as `stored` if they are the ones of the picture stored as `picture`
    /// and suffice for `opts`; anything else (none, damaged, another picture's) is `None`, and
    /// the cards are made from the picture.
    pub fn usable(stored: Option<&[u8]>, picture: &[u8], opts: &RenderOptions) -> Option<Self> {
        if !Self::suffice_for(opts) {
            return None;
        }
        Self::from_bytes(stored?).ok().filter(|s| s.are_of(picture))
    }

    /// Whether cards with `opts` can be made from the subjects alone (a blurred background
    /// needs the whole picture, and the sticker style its own subjects).
    pub fn suffice_for(opts: &RenderOptions) -> bool {
        opts.background != Background::Blur && opts.style == super::ShareStyle::Plain
    }
}

#[cfg(test)]
mod tests {
    use image::RgbImage;

    use super::*;
    use crate::render::{
        OG_SIZE, PINTEREST_SIZE, SQUARE_SIZE, render_card, render_og, render_share,
        render_share_with,
        test_support::{card_settings, cutout},
    };

    #[test]
    fn cards_from_share_ready_subjects_have_the_same_bytes() {
        for opts in card_settings() {
            for src in [cutout(500, 380), cutout(1024, 1024)] {
                let subjects = CardSubjects::new(&src, b"file")
                    .unwrap()
                    .expect("a cut-out");
                let stored = CardSubjects::from_bytes(&subjects.to_bytes().unwrap()).unwrap();
                assert_eq!(stored, subjects);
                let whole = render_share(&src, &opts).unwrap();
                let with = render_share_with(&src, Some(&stored), &opts).unwrap();
                for (size, from_picture, from_picture_with) in [
                    (OG_SIZE, &whole.og, &with.og),
                    (PINTEREST_SIZE, &whole.pinterest, &with.pinterest),
                    (SQUARE_SIZE, &whole.square, &with.square),
                ] {
                    let card = render_card(&stored, size, &opts).unwrap();
                    assert_eq!(card.bytes, from_picture.bytes, "{size:?}");
                    assert_eq!(from_picture_with.bytes, from_picture.bytes, "{size:?}");
                }
                assert_eq!(with.image.bytes, whole.image.bytes);
            }
        }
        // Subjects of another picture are not used for this one.
        let (a, b) = (cutout(500, 380), cutout(380, 500));
        let other = CardSubjects::new(&b, b"b").unwrap().unwrap();
        let opts = RenderOptions::default();
        assert_eq!(
            render_share_with(&a, Some(&other), &opts).unwrap().og.bytes,
            render_og(&a, &opts).unwrap().bytes
        );
        // A blurred background needs the whole picture.
        let blur = RenderOptions {
            background: Background::Blur,
            ..RenderOptions::default()
        };
        let subjects = CardSubjects::new(&a, b"a").unwrap().unwrap();
        assert!(render_card(&subjects, OG_SIZE, &blur).is_err());
        // They know the file they were made from.
        assert!(subjects.are_of(b"a") && !subjects.are_of(b"b"));
        let stored = subjects.to_bytes().unwrap();
        assert!(CardSubjects::usable(Some(&stored), b"a", &opts).is_some());
        assert!(CardSubjects::usable(Some(&stored), b"b", &opts).is_none());
        assert!(CardSubjects::usable(Some(&stored[..100]), b"a", &opts).is_none());
        assert!(CardSubjects::usable(Some(&stored), b"a", &blur).is_none());
        assert!(CardSubjects::usable(None, b"a", &opts).is_none());
    }

    #[test]
    fn share_ready_subjects_are_for_cutouts_and_refuse_damaged_files() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, image::Rgb([1, 2, 3])));
        assert_eq!(CardSubjects::new(&photo, b"").unwrap(), None);
        let opaque =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 48, image::Rgba([1, 2, 3, 255])));
        assert_eq!(CardSubjects::new(&opaque, b"").unwrap(), None);

        let bytes = CardSubjects::new(&cutout(300, 200), b"")
            .unwrap()
            .unwrap()
            .to_bytes()
            .unwrap();
        // Mostly transparent: far smaller than the raw pixels.
        let raw: usize = CARD_SIZES
            .iter()
            .map(|&c| {
                let (w, h) = subject_size((300, 200), c, true);
                (w * h * 4) as usize
            })
            .sum();
        assert!(bytes.len() * 4 < raw, "{} of {raw}", bytes.len());
        assert!(CardSubjects::from_bytes(&bytes).is_ok());
        // Read for one card: that card renders, another does not, and it cannot be written.
        let og_only = CardSubjects::from_bytes_for(&bytes, &[OG_SIZE]).unwrap();
        let opts = RenderOptions::default();
        assert_eq!(
            render_card(&og_only, OG_SIZE, &opts).unwrap().bytes,
            render_og(&cutout(300, 200), &opts).unwrap().bytes
        );
        assert!(render_card(&og_only, SQUARE_SIZE, &opts).is_err());
        assert!(og_only.to_bytes().is_err());
        // Every prefix, a wrong magic, bytes left over, a wrong source size, flipped bytes:
        // refused, never a panic.
        for n in (0..bytes.len()).step_by(97) {
            assert!(CardSubjects::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(CardSubjects::from_bytes(&extra).is_err());
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(CardSubjects::from_bytes(&magic).is_err());
        let mut size = bytes.clone();
        size[40] ^= 1;
        assert!(CardSubjects::from_bytes(&size).is_err());
        let mut huge = bytes.clone();
        huge[40..48].copy_from_slice(&[0xff; 8]);
        assert!(CardSubjects::from_bytes(&huge).is_err());
        for at in (48..bytes.len()).step_by(13) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5a;
            assert!(
                CardSubjects::from_bytes(&flipped).is_err(),
                "byte {at} flipped"
            );
        }
    }
}
