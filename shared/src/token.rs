//! Signed share tokens: proof that a result was made by the GPU service, so that only its
//! results can be shared (the edge is never open image hosting).
//!
//! A token is `<result id>.<expiry, unix seconds>.<HMAC-SHA256, hex>`, the MAC taken over
//! `share-token/v1|<id>|<expiry>` with a secret both sides read from their environment.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ids::{hex, is_valid_id};

const DOMAIN: &str = "share-token/v1";

/// Why a token was refused. Stable codes via [`TokenError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the share token is malformed")]
    Malformed,
    #[error("the share token's signature does not match")]
    BadSignature,
    #[error("the share token expired")]
    Expired,
    #[error("the share token was issued for another result")]
    WrongResult,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            _ => "invalid_token",
        }
    }

    /// The HTTP status both shells answer for a refused token.
    pub fn http_status(&self) -> u16 {
        403
    }
}

/// What a valid token vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub result_id: String,
    pub expires_at: u64,
}

fn mac(secret: &[u8], result_id: &str, expires_at: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{DOMAIN}|{result_id}|{expires_at}").as_bytes());
    mac
}

/// Sign a token for `result_id` valid until `expires_at` (unix seconds).
pub fn sign(secret: &[u8], result_id: &str, expires_at: u64) -> String {
    let tag = mac(secret, result_id, expires_at).finalize().into_bytes();
    format!("{result_id}.{expires_at}.{}", hex(&tag))
}

/// Check a token's shape, signature (in constant time) and expiry against `now`.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(id), Some(exp), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    // The expiry in its one spelling, as `sign` writes it: digits, no sign, no leading zero
    // (`u64::from_str` alone also takes `+1800000000` and `01800000000`, found by fuzzing).
    let canonical =
        exp.bytes().all(|b| b.is_ascii_digit()) && (exp == "0" || !exp.starts_with('0'));
    if !is_valid_id(id) || sig.len() != 64 || exp.is_empty() || exp.len() > 20 || !canonical {
        return Err(TokenError::Malformed);
    }
    let expires_at: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    let tag = unhex(sig).ok_or(TokenError::Malformed)?;
    mac(secret, id, expires_at)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(Claims {
        result_id: id.to_owned(),
        expires_at,
    })
}

/// Verify and also require that the token was issued for `result_id`.
pub fn verify_for(
    secret: &[u8],
    token: &str,
    result_id: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let claims = verify(secret, token, now)?;
    if claims.result_id != result_id {
        return Err(TokenError::WrongResult);
    }
    Ok(claims)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const SECRET: &[u8] = b"test secret";

    #[test]
    fn round_trip() {
        let t = sign(SECRET, ID, 1_000);
        let claims = verify_for(SECRET, &t, ID, 999).unwrap();
        assert_eq!(claims.expires_at, 1_000);
        assert_eq!(claims.result_id, ID);
    }

    #[test]
    fn refuses_expired_forged_and_foreign_tokens() {
        let t = sign(SECRET, ID, 1_000);
        assert_eq!(verify(SECRET, &t, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(b"other", &t, 0), Err(TokenError::BadSignature));
        // Moving the expiry invalidates the signature.
        let stretched = t.replacen(".1000.", ".9999.", 1);
        assert_eq!(verify(SECRET, &stretched, 0), Err(TokenError::BadSignature));
        let other = "f".repeat(32);
        assert_eq!(
            verify_for(SECRET, &t, &other, 0),
            Err(TokenError::WrongResult)
        );
        assert_eq!(TokenError::Expired.code(), "token_expired");
        assert_eq!(TokenError::WrongResult.code(), "invalid_token");
    }

    #[test]
    fn a_token_verifies_only_as_signed() {
        // Found by fuzzing (tests/fuzz/regressions/token/): the same expiry spelled with a sign
        // or a leading zero parsed to the same number and verified.
        let good = sign(SECRET, ID, 1_000);
        assert!(verify(SECRET, &good, 0).is_ok());
        for respelled in [".+1000.", ".01000.", ". 1000."] {
            let t = good.replacen(".1000.", respelled, 1);
            assert_eq!(verify(SECRET, &t, 0), Err(TokenError::Malformed), "{t}");
        }
        let zero = sign(SECRET, ID, 0);
        assert_eq!(verify(SECRET, &zero, 0), Err(TokenError::Expired));
    }

    #[test]
    fn refuses_malformed_tokens() {
        let good = sign(SECRET, ID, 1_000);
        for bad in [
            "".to_owned(),
            "abc".to_owned(),
            format!("{good}.x"),
            good.replacen(ID, "../../../../etc/passwd/aaaaaaaaaa", 1),
            format!("{ID}.-1.{}", "0".repeat(64)),
            format!("{ID}.10.{}", "Z".repeat(64)),
            format!("{ID}.99999999999999999999999.{}", "0".repeat(64)),
        ] {
            assert_eq!(verify(SECRET, &bad, 0), Err(TokenError::Malformed), "{bad}");
        }
    }
}
