//! HS256 access tokens: verification for the handshake and minting for `gateway token`.
//!
//! The contract differs from `jsonwebtoken`'s defaults: no leeway, and an `aud` claim is ignored
//! unless `JWT_AUDIENCE` is set. Both are set here, once.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::Value;
use shared::claims::AccessClaims;

use crate::config::JwtSettings;

/// Tokens longer than this are refused before any parsing (handshake step 2).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, bad signature, wrong algorithm, missing `exp`, wrong `iss`/`aud`, too long.
    #[error("invalid token")]
    Invalid,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
}

/// The claims the handshake reads, as they came: `sub` and `sid` are checked by the caller, so
/// a token without them is told apart from a malformed one.
#[derive(Debug, Deserialize)]
pub struct RawClaims {
    #[serde(default)]
    pub sub: Option<Value>,
    #[serde(default)]
    pub sid: Option<Value>,
    /// Seconds since the epoch; the validation requires it, so it is there once verified.
    #[serde(default)]
    pub exp: Option<u64>,
}

/// Verifies access tokens with the configured key, issuer and audience.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        // A token must not be used before its `nbf`, when it has one.
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Self {
            key: DecodingKey::from_secret(settings.secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<RawClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let data = match jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation) {
            Ok(data) => data,
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                return Err(TokenError::Expired);
            }
            Err(_) => return Err(TokenError::Invalid),
        };
        // RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand; we
        // implement none, so any is a refusal.
        if data.header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        // RFC 7519 §4.1.4: the token is valid only while now is *before* `exp`; the library
        // still accepts the second of `exp` itself.
        match data.claims.exp {
            Some(exp) if exp > now_secs() => Ok(data.claims),
            Some(_) => Err(TokenError::Expired),
            None => Err(TokenError::Invalid),
        }
    }
}

/// Signs an access token the way the auth service does (`gateway token`, tests, local cluster).
pub fn mint(
    settings: &JwtSettings,
    claims: &AccessClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(settings.secret.expose().as_bytes()),
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::json;

    fn settings(issuer: Option<&str>, audience: Option<&str>) -> JwtSettings {
        JwtSettings {
            secret: Secret::new("test-secret"),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
        }
    }

    fn sign(claims: Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    fn hs256(claims: Value) -> String {
        sign(claims, Algorithm::HS256, "test-secret")
    }

    fn in_an_hour() -> u64 {
        now_secs() + 3600
    }

    #[test]
    fn a_valid_token_yields_sub_and_sid() {
        let v = TokenVerifier::new(&settings(None, None));
        let claims = v
            .verify(&hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour()})))
            .expect("valid");
        assert_eq!(claims.sub, Some(json!("u")));
        assert_eq!(claims.sid, Some(json!("s")));
    }

    #[test]
    fn minted_tokens_verify() {
        let s = settings(Some("auth"), Some("gw"));
        let token = mint(
            &s,
            &AccessClaims {
                sub: "u".into(),
                sid: "s".into(),
                iat: now_secs(),
                exp: in_an_hour(),
                iss: Some("auth".into()),
                aud: Some("gw".into()),
            },
        )
        .expect("mint");
        assert!(TokenVerifier::new(&s).verify(&token).is_ok());
    }

    #[test]
    fn expiry_has_no_leeway() {
        let v = TokenVerifier::new(&settings(None, None));
        let token = hs256(json!({"sub": "u", "sid": "s", "exp": now_secs() - 30}));
        assert_eq!(v.verify(&token).err(), Some(TokenError::Expired));
    }

    #[test]
    fn a_token_is_expired_from_the_second_of_its_exp() {
        let v = TokenVerifier::new(&settings(None, None));
        let token = hs256(json!({"sub": "u", "sid": "s", "exp": now_secs()}));
        assert_eq!(v.verify(&token).err(), Some(TokenError::Expired));
        let exp = now_secs() + 2;
        let token = hs256(json!({"sub": "u", "sid": "s", "exp": exp}));
        assert_eq!(v.verify(&token).expect("valid").exp, Some(exp));
    }

    #[test]
    fn a_critical_header_extension_is_refused() {
        let v = TokenVerifier::new(&settings(None, None));
        let claims = json!({"sub": "u", "sid": "s", "exp": in_an_hour()});
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["b64".into()]);
        let key = EncodingKey::from_secret(b"test-secret");
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
        assert_eq!(v.verify(&token).err(), Some(TokenError::Invalid));
        // The same token without `crit` passes: the refusal is the header's.
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign");
        assert!(v.verify(&token).is_ok());
    }

    #[test]
    fn malformed_and_forged_tokens_are_invalid() {
        let v = TokenVerifier::new(&settings(None, None));
        let exp = in_an_hour();
        let cases = [
            ("garbage", "not.a.jwt".to_owned()),
            ("no exp", hs256(json!({"sub": "u", "sid": "s"}))),
            (
                "string exp",
                hs256(json!({"sub": "u", "sid": "s", "exp": "soon"})),
            ),
            (
                "wrong key",
                sign(
                    json!({"sub": "u", "sid": "s", "exp": exp}),
                    Algorithm::HS256,
                    "other",
                ),
            ),
            (
                "HS512",
                sign(
                    json!({"sub": "u", "sid": "s", "exp": exp}),
                    Algorithm::HS512,
                    "test-secret",
                ),
            ),
            ("too long", "a".repeat(MAX_TOKEN_BYTES + 1)),
            (
                "not yet valid",
                hs256(json!({"sub": "u", "sid": "s", "exp": exp, "nbf": exp - 60})),
            ),
        ];
        for (name, token) in cases {
            assert_eq!(v.verify(&token).err(), Some(TokenError::Invalid), "{name}");
        }
    }

    #[test]
    fn alg_none_is_invalid() {
        // header {"alg":"none","typ":"JWT"}, an unsigned token.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        // payload {"sub":"u","sid":"s","exp":4102444800} (year 2100).
        let payload = "eyJzdWIiOiJ1Iiwic2lkIjoicyIsImV4cCI6NDEwMjQ0NDgwMH0";
        let v = TokenVerifier::new(&settings(None, None));
        assert_eq!(
            v.verify(&format!("{header}.{payload}.")).err(),
            Some(TokenError::Invalid)
        );
    }

    #[test]
    fn audience_is_ignored_unless_configured() {
        let token = hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour(), "aud": "someone"}));
        assert!(
            TokenVerifier::new(&settings(None, None))
                .verify(&token)
                .is_ok()
        );
        let v = TokenVerifier::new(&settings(None, Some("gw")));
        assert_eq!(v.verify(&token).err(), Some(TokenError::Invalid));
        let no_aud = hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour()}));
        assert_eq!(v.verify(&no_aud).err(), Some(TokenError::Invalid));
        let right = hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour(), "aud": "gw"}));
        assert!(v.verify(&right).is_ok());
    }

    #[test]
    fn issuer_is_checked_when_configured() {
        let v = TokenVerifier::new(&settings(Some("auth"), None));
        let wrong = hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour(), "iss": "evil"}));
        assert_eq!(v.verify(&wrong).err(), Some(TokenError::Invalid));
        let right = hs256(json!({"sub": "u", "sid": "s", "exp": in_an_hour(), "iss": "auth"}));
        assert!(v.verify(&right).is_ok());
    }
}

/// Tokens from anyone: only the key's own, unaltered, verify.
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::config::Secret;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&JwtSettings {
            secret: Secret::new("test-secret"),
            issuer: None,
            audience: None,
        })
    }

    fn valid() -> String {
        let claims = json!({ "sub": "u", "sid": "s", "exp": now_secs() + 3600 });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .expect("sign")
    }

    proptest! {
        #[test]
        fn any_string_is_refused(token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}",
        ]) {
            prop_assert!(verifier().verify(&token).is_err());
        }

        #[test]
        fn a_token_with_any_character_changed_is_refused(at in any::<prop::sample::Index>(), with in any::<char>()) {
            let token = valid();
            prop_assert!(verifier().verify(&token).is_ok());
            let mut chars: Vec<char> = token.chars().collect();
            let i = at.index(chars.len());
            prop_assume!(chars[i] != with);
            chars[i] = with;
            let altered: String = chars.into_iter().collect();
            prop_assert!(verifier().verify(&altered).is_err(), "{altered} verified");
        }
    }
}
