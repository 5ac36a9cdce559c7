//! The share page: the HTML social crawlers read (Open Graph, Twitter card, Pinterest) and people
//! see (the picture and a link to the shop). Every user-supplied string is escaped.

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
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a title; drop them.
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// What people see for a share id that does not exist (served with 404), with a link home.
pub fn not_found_page(home_url: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Not found</title>\
         <main style=\"font:16px system-ui;margin:3em auto;max-width:30em\"><h1>This share does not exist</h1>\
         <p>The link may be mistyped. <a href=\"{}\">Make your own pet cut-out</a>.</p></main></html>",
        escape(home_url)
    )
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

/// The share page for a stored share.
pub fn share_page(cfg: &PageConfig, m: &ShareManifest) -> String {
    let [page, image, og, pin, _square] = share_urls(&cfg.base_url, &m.id);
    let title = escape(&m.title);
    let alt = escape(&m.alt);
    let site = escape(&cfg.site_name);
    let shop = escape(&cfg.shop_url);
    let (page, image, og, pin) = (escape(&page), escape(&image), escape(&og), escape(&pin));
    let secure = |url: &str| {
        if url.starts_with("https://") {
            format!("\n<meta property=\"og:image:secure_url\" content=\"{url}\">")
        } else {
            String::new()
        }
    };
    let og_secure = secure(&og);
    let pin_secure = secure(&pin);
    let (ow, oh, pw, ph, iw, ih) = (
        m.og.width,
        m.og.height,
        m.pinterest.width,
        m.pinterest.height,
        m.image.width,
        m.image.height,
    );
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {site}</title>
<link rel="canonical" href="{page}">
<meta name="description" content="{alt}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="{site}">
<meta property="og:title" content="{title}">
<meta property="og:description" content="{alt}">
<meta property="og:url" content="{page}">
<meta property="og:image" content="{og}">{og_secure}
<meta property="og:image:type" content="image/jpeg">
<meta property="og:image:width" content="{ow}">
<meta property="og:image:height" content="{oh}">
<meta property="og:image:alt" content="{alt}">
<meta property="og:image" content="{pin}">{pin_secure}
<meta property="og:image:type" content="image/jpeg">
<meta property="og:image:width" content="{pw}">
<meta property="og:image:height" content="{ph}">
<meta property="og:image:alt" content="{alt}">
<meta name="twitter:card" content="summary_large_image">
<meta name="twitter:title" content="{title}">
<meta name="twitter:description" content="{alt}">
<meta name="twitter:image" content="{og}">
<meta name="twitter:image:alt" content="{alt}">
<meta name="pinterest-rich-pin" content="true">
<style>
body{{margin:0;font:16px/1.5 system-ui,sans-serif;background:#f6f4f0;color:#1d1d1f}}
main{{max-width:960px;margin:0 auto;padding:24px 16px;text-align:center}}
img{{max-width:100%;height:auto;border-radius:12px;box-shadow:0 4px 24px #0002}}
a.shop{{display:inline-block;margin-top:20px;padding:12px 22px;border-radius:999px;background:#1d4ed8;color:#fff;text-decoration:none;font-weight:600}}
a.shop:focus{{outline:3px solid #f59e0b;outline-offset:2px}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<img src="{image}" width="{iw}" height="{ih}" alt="{alt}" data-pin-media="{pin}" data-pin-description="{title}">
<p><a class="shop" href="{shop}">Make your own pet cut-out at {site}</a></p>
</main>
</body>
</html>
"##
    )
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
