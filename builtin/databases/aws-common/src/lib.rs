//! What confd's AWS backends (ssm, secretsmanager, dynamodb, imds) share, so that each decides
//! nothing about AWS on its own: the settings every one of them takes (region, endpoint,
//! profile, static credentials, connect timeout), how they become the SDK's configuration (the
//! SDK's own chains for everything not set, so credentials, regions, profiles, web identity and
//! IMDSv2 resolve as in every AWS tool), and how an SDK error becomes a confd error.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use confd_sdk::{Config, Error, ErrorKind, Setting};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `region`: the region when the SDK chain (`AWS_REGION`, the profile, instance metadata) should
/// not decide.
pub const REGION: Setting = Setting::from(
    "region",
    &[],
    "AWS region (default: AWS_REGION, the profile, then instance metadata)",
);
/// `endpoint`: taken from `--node`, for tests and private endpoints.
pub const ENDPOINT: Setting = Setting::from(
    "endpoint",
    &["nodes"],
    "endpoint URL (default: AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, then AWS's own)",
);
/// `profile`: a named profile of the shared config files.
pub const PROFILE: Setting = Setting::from(
    "profile",
    &[],
    "profile of ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE, then default)",
);
/// `accessKeyId`: static credentials instead of the SDK chain.
pub const ACCESS_KEY_ID: Setting = Setting::from(
    "accessKeyId",
    &[],
    "static access key id (default: the SDK credential chain)",
);
/// `secretAccessKey`: goes with `accessKeyId`.
pub const SECRET_ACCESS_KEY: Setting = Setting::from(
    "secretAccessKey",
    &[],
    "static secret access key, with accessKeyId",
);
/// `sessionToken`: goes with `accessKeyId` for temporary credentials.
pub const SESSION_TOKEN: Setting = Setting::from(
    "sessionToken",
    &[],
    "session token of temporary static credentials",
);
/// `dialTimeout`: `--dial-timeout`.
pub const DIAL_TIMEOUT: Setting = Setting::from(
    "dialTimeout",
    &["dial_timeout"],
    "connect time limit (default 3.1s, the SDK's)",
);

/// The keys above, in the order the descriptors list them.
pub const KEYS: [&str; 7] = [
    REGION.key,
    ENDPOINT.key,
    PROFILE.key,
    ACCESS_KEY_ID.key,
    SECRET_ACCESS_KEY.key,
    SESSION_TOKEN.key,
    DIAL_TIMEOUT.key,
];

/// A descriptor's `settings`: the shared ones, then the backend's own.
///
/// ```
/// use confd_sdk::Setting;
/// const SETTINGS: &[Setting] = confd_aws_common::settings![Setting::from("table", &["table"], "t")];
/// assert_eq!(SETTINGS.len(), confd_aws_common::KEYS.len() + 1);
/// ```
#[macro_export]
macro_rules! settings {
    ($($own:expr),* $(,)?) => {
        &[
            $crate::REGION,
            $crate::ENDPOINT,
            $crate::PROFILE,
            $crate::ACCESS_KEY_ID,
            $crate::SECRET_ACCESS_KEY,
            $crate::SESSION_TOKEN,
            $crate::DIAL_TIMEOUT,
            $($own),*
        ]
    };
}

/// What `watch_prefix` of a backend that cannot watch fails with: AWS offers no change feed
/// for these stores that confd could wait on.
pub fn watch_unsupported(backend: &str) -> Error {
    Error::unimplemented(format!(
        "the {backend} backend cannot watch: AWS offers no change notification confd could \
         wait on; use --onetime or --interval"
    ))
}

/// The settings every AWS backend takes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Also `nodes`, which the host fills from `--node`.
    #[serde(alias = "nodes")]
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    #[serde(with = "confd_sdk::config::duration::option")]
    pub dial_timeout: Option<Duration>,
}

/// Decodes `config` into the shared settings and the backend's own `T` (which should deny
/// unknown fields: every key that is not one of [`KEYS`] goes to it, so an unknown key is
/// refused by name).
pub fn decode<T: DeserializeOwned>(config: &Config) -> Result<(AwsSettings, T), Error> {
    let (shared, own): (HashMap<_, _>, HashMap<_, _>) = config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| KEYS.contains(&k.as_str()) || k == "nodes");
    let aws: AwsSettings = confd_sdk::config::decode(&shared)?;
    let own: T = confd_sdk::config::decode(&own)?;
    Ok((aws, own))
}

impl AwsSettings {
    /// The endpoint URL: the setting, else the fork's `<SERVICE>_ENDPOINT_URL` variable
    /// (`fork_env`); `None` lets the SDK decide (`AWS_ENDPOINT_URL_<SERVICE>`,
    /// `AWS_ENDPOINT_URL`, the profile, AWS's own endpoint). A bare `host:port` means https.
    pub fn endpoint_url(&self, fork_env: Option<&str>) -> Result<Option<String>, Error> {
        let configured = self.endpoint.clone().filter(|e| !e.trim().is_empty());
        let from_env = || {
            fork_env
                .and_then(|name| std::env::var(name).ok())
                .filter(|e| !e.trim().is_empty())
        };
        let Some(url) = configured.or_else(from_env) else {
            return Ok(None);
        };
        let url = url.trim();
        if url.contains(',') {
            return Err(Error::invalid_config(format!(
                "`endpoint` takes one URL, got {url:?} (several --node values?)"
            )));
        }
        Ok(Some(if url.contains("://") {
            url.trim_end_matches('/').to_string()
        } else {
            format!("https://{}", url.trim_end_matches('/'))
        }))
    }

    /// The SDK configuration: what is set here, the SDK's default chains for the rest.
    /// `fork_env` is the fork's endpoint variable of the service (`SSM_ENDPOINT_URL`).
    pub async fn sdk_config(&self, fork_env: Option<&str>) -> Result<SdkConfig, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = self.region.clone().filter(|r| !r.is_empty()) {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = self.endpoint_url(fork_env)? {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = self.profile.clone().filter(|p| !p.is_empty()) {
            loader = loader.profile_name(profile);
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                let credentials = aws_credential_types::Credentials::new(
                    id,
                    secret,
                    self.session_token.clone().filter(|t| !t.is_empty()),
                    None,
                    "confd-settings",
                );
                loader = loader.credentials_provider(credentials);
            }
            (None, None) => {}
            _ => {
                return Err(Error::invalid_config(
                    "`accessKeyId` and `secretAccessKey` must be given together",
                ));
            }
        }
        if let Some(timeout) = self.dial_timeout {
            loader =
                loader.timeout_config(TimeoutConfig::builder().connect_timeout(timeout).build());
        }
        Ok(loader.load().await)
    }
}

/// An SDK error as a confd error: `backend: <doing>: <cause>`, where `doing` names the key or
/// table. Access problems (denied, unknown or expired credentials, no credentials at all) are
/// `PermissionDenied`; throttling, 5xx and connection failures `Unavailable`.
pub fn error<E>(backend: &str, doing: &str, err: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, cause) = match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let status = service.raw().status().as_u16();
            match inner.code() {
                Some(code) => (
                    code_kind(code),
                    format!("{code}: {}", inner.message().unwrap_or_default()),
                ),
                // An answer the SDK could not read an error code from: say what came back.
                None => {
                    let body = service
                        .raw()
                        .body()
                        .bytes()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    let body: String = body.trim().chars().take(300).collect();
                    (status_kind(status), format!("HTTP {status}: {body}"))
                }
            }
        }
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, chain(err)),
        SdkError::DispatchFailure(failure) => {
            let text = chain(err);
            let kind = if failure.is_timeout() {
                ErrorKind::Timeout
            } else if failure.is_io() {
                ErrorKind::Unavailable
            } else if text.contains("credentials") {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::Unavailable
            };
            (kind, text)
        }
        SdkError::ConstructionFailure(_) => (ErrorKind::InvalidConfig, chain(err)),
        _ => (ErrorKind::Internal, chain(err)),
    };
    Error::new(kind, format!("{backend}: {doing}: {cause}"))
}

/// An error and all its sources on one line: the SDK's own text hides the cause, and its
/// `DisplayErrorContext` appends a debug dump of the whole response.
pub fn chain<E: std::error::Error + ?Sized>(err: &E) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The kind of an HTTP status without an error code.
pub fn status_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::PermissionDenied,
        429 | 500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// The kind of a service error code. AWS spells the same problem differently per service.
pub fn code_kind(code: &str) -> ErrorKind {
    const DENIED: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "UnauthorizedOperation",
        "AuthFailure",
    ];
    const BUSY: &[&str] = &[
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
        "InternalServiceError",
        "InternalServerErrorException",
    ];
    if DENIED.contains(&code) {
        ErrorKind::PermissionDenied
    } else if BUSY.contains(&code) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    struct Own {
        table: Option<String>,
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shared_and_own_keys_go_to_their_structs() {
        let (aws, own): (AwsSettings, Own) = decode(&config(&[
            ("region", "eu-west-1"),
            ("nodes", "http://127.0.0.1:5000"),
            ("table", "confd"),
            ("dialTimeout", "2s"),
        ]))
        .expect("valid settings");
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(aws.dial_timeout, Some(Duration::from_secs(2)));
        assert_eq!(own.table.as_deref(), Some("confd"));
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = decode::<Own>(&config(&[("regoin", "x")])).expect_err("unknown key");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("regoin"), "{err}");
        let err = decode::<Own>(&config(&[("dialTimeout", "soon")])).expect_err("bad duration");
        assert!(err.to_string().contains("dialTimeout"), "{err}");
    }

    #[test]
    fn endpoints_get_a_scheme_and_lose_trailing_slashes() {
        let with = |e: &str| AwsSettings {
            endpoint: Some(e.to_string()),
            ..AwsSettings::default()
        };
        assert_eq!(
            with("http://127.0.0.1:5000/").endpoint_url(None).ok(),
            Some(Some("http://127.0.0.1:5000".to_string()))
        );
        assert_eq!(
            with("ssm.internal:443").endpoint_url(None).ok(),
            Some(Some("https://ssm.internal:443".to_string()))
        );
        assert!(with("http://a,http://b").endpoint_url(None).is_err());
        assert_eq!(AwsSettings::default().endpoint_url(None).ok(), Some(None));
    }

    #[test]
    fn error_codes_map_to_kinds() {
        assert_eq!(
            code_kind("AccessDeniedException"),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            code_kind("UnrecognizedClientException"),
            ErrorKind::PermissionDenied
        );
        assert_eq!(code_kind("ThrottlingException"), ErrorKind::Unavailable);
        assert_eq!(code_kind("ValidationException"), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn half_static_credentials_are_refused() {
        let settings = AwsSettings {
            access_key_id: Some("AKID".into()),
            ..AwsSettings::default()
        };
        let err = settings
            .sdk_config(None)
            .await
            .expect_err("half credentials");
        assert!(err.to_string().contains("secretAccessKey"), "{err}");
    }
}
