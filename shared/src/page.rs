//! The share page: the HTML social crawlers read (Open Graph, Twitter card, Pinterest) and people
//! see (the picture and a link to the shop). Every user-supplied string is escaped.

use askama::Template;

use crate::api::{ShareManifest, share_urls};

/// Who the page speaks for. All values come from the operator's configuration.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// Public base URL of the share routes, no trailing slash (`https://share.example.com`).
    pub base_url: String,
    /// Site name for og:site_name and the page heading.
    pub site_name: String,
    /// Where the "make your own" link points (the shop's page).
    pub shop_url: String,
}

/// Escape text for HTML element content and double- or single-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let _ = askama::filters::Escaper::write_escaped_str(&Escape, &mut out, s);
    out
}

/// The templates' escaper (`shared/askama.toml`): every value a template writes goes through it.
#[derive(Debug, Clone, Copy)]
pub struct Escape;

impl askama::filters::Escaper for Escape {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            match c {
                '&' => dest.write_str("&amp;")?,
                '<' => dest.write_str("&lt;")?,
                '>' => dest.write_str("&gt;")?,
                '"' => dest.write_str("&quot;")?,
                '\'' => dest.write_str("&#39;")?,
                // Control characters have no business in a title; drop them.
                c if c.is_control() && c != '\n' && c != '\t' => {}
                c => dest.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// What people see for a share id that does not exist (served with 404), with a link home.
pub fn not_found_page(home_url: &str) -> String {
    #[derive(Template)]
    #[template(path = "not_found.html")]
    struct NotFound<'a> {
        home: &'a str,
    }
    NotFound { home: home_url }
        .render()
        .expect("a template of strings renders")
}

/// Whether an `Accept` header asks for JSON rather than a page (API clients, tests).
pub fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/json"))
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, `*` matches).
pub fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(h) = if_none_match else {
        return false;
    };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    h.split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// The share page (`shared/templates/share.html`). Every value is escaped by the template;
/// `secure` adds `og:image:secure_url` for https links.
#[derive(Template)]
#[template(path = "share.html")]
struct SharePage<'a> {
    title: &'a str,
    alt: &'a str,
    site: &'a str,
    shop: &'a str,
    page: &'a str,
    image: &'a str,
    og: &'a str,
    pin: &'a str,
    secure: bool,
    og_size: (u32, u32),
    pin_size: (u32, u32),
    image_size: (u32, u32),
}

/// The share page for a stored share.
pub fn share_page(cfg: &PageConfig, m: &ShareManifest) -> String {
    let [page, image, og, pin, _square] = share_urls(&cfg.base_url, &m.id);
    SharePage {
        title: &m.title,
        alt: &m.alt,
        site: &cfg.site_name,
        shop: &cfg.shop_url,
        secure: og.starts_with("https://"),
        page: &page,
        image: &image,
        og: &og,
        pin: &pin,
        og_size: (m.og.width, m.og.height),
        pin_size: (m.pinterest.width, m.pinterest.height),
        image_size: (m.image.width, m.image.height),
    }
    .render()
    .expect("a template of strings renders")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert!(etag_matches(Some("\"abc\""), "\"abc\""));
        assert!(etag_matches(Some("W/\"abc\", \"x\""), "\"abc\""));
        assert!(etag_matches(Some("*"), "\"abc\""));
        assert!(!etag_matches(Some("\"abd\""), "\"abc\""));
        assert!(!etag_matches(None, "\"abc\""));
    }

    use crate::api::StoredImage;

    fn manifest(title: &str) -> ShareManifest {
        let img = |w, h| StoredImage {
            width: w,
            height: h,
            content_type: "image/jpeg".into(),
            bytes: 1,
        };
        ShareManifest {
            id: "0123456789abcdef0123456789abcdef".into(),
            title: title.into(),
            alt: format!("{title}, cut out"),
            image: img(800, 600),
            og: img(1200, 630),
            pinterest: img(1000, 1500),
            square: img(1080, 1080),
            created_at: 0,
        }
    }

    fn cfg() -> PageConfig {
        PageConfig {
            base_url: "https://share.example".into(),
            site_name: "Pet Shop".into(),
            shop_url: "https://shop.example/?a=1&b=2".into(),
        }
    }

    #[test]
    fn page_carries_absolute_tags() {
        let html = share_page(&cfg(), &manifest("Rex"));
        for needle in [
            r#"<meta property="og:image" content="https://share.example/og/0123456789abcdef0123456789abcdef.jpg">"#,
            r#"<meta property="og:image:width" content="1200">"#,
            r#"<meta property="og:image:height" content="630">"#,
            r#"<meta property="og:url" content="https://share.example/s/0123456789abcdef0123456789abcdef">"#,
            r#"<meta name="twitter:card" content="summary_large_image">"#,
            r#"data-pin-media="https://share.example/og/0123456789abcdef0123456789abcdef-pin.jpg""#,
            r#"href="https://shop.example/?a=1&amp;b=2""#,
            "og:image:secure_url",
        ] {
            assert!(html.contains(needle), "missing {needle}\n{html}");
        }
    }

    #[test]
    fn user_strings_are_escaped() {
        let html = share_page(
            &cfg(),
            &manifest(r#"<script>alert("x")</script>' onload='"#),
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("' onload='"));
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;")
        );
        assert_eq!(escape("a\u{0}b\u{7}c"), "abc");
    }
}
