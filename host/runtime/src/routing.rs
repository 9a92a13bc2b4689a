//! The route table: which loaded plugin serves `METHOD /path`, and the route that matched,
//! handed to the guest as data (`cinder:plugin/route`, WIT 0.1.6) so that a plugin never
//! matches the path again.

/// A manifest route that matched a request: its id and the path's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    /// The manifest's `id` for the route, or `METHOD /pattern` when it has none.
    pub id: String,
    /// `{name}` segments of the pattern and what the path had there, in order.
    pub params: Vec<(String, String)>,
    /// How the route takes its body.
    pub body: RouteBody,
}

/// How a route takes its request body (`body` in a manifest's route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteBody {
    /// Whole, as text (JSON).
    #[default]
    Json,
    /// A multipart form the host parses and the plugin reads a part at a time (WIT
    /// `multipart`).
    Multipart,
    /// A form when the request's `Content-Type` is `multipart/form-data`, else JSON: OpenAI's
    /// routes that take a file only sometimes (`POST /v1/videos` with an `input_reference`).
    JsonOrMultipart,
}

impl RouteBody {
    /// Whether a request with this `Content-Type` is read as a form.
    pub fn reads_form(self, content_type: Option<&str>) -> bool {
        match self {
            RouteBody::Json => false,
            RouteBody::Multipart => true,
            RouteBody::JsonOrMultipart => content_type.is_some_and(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
            }),
        }
    }

    /// Whether the route may take a form at all.
    pub fn takes_forms(self) -> bool {
        self != RouteBody::Json
    }
}

/// One route of a loaded plugin.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) pattern: String,
    pub(crate) id: String,
    pub(crate) body: RouteBody,
    /// Index of the plugin in the registry.
    pub(crate) plugin: usize,
}

/// Routes the host answers before any plugin is asked (`/v1/models/{*id}` takes every path
/// below it).
pub(crate) const HOST_ROUTES: [&str; 2] = ["/v1/models", "/v1/models/{*}"];

/// A route id as a manifest may write it: `[a-z0-9][a-z0-9._-]{0,63}` (`chat.create`).
pub(crate) fn valid_route_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.len() <= 64
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// Whether a route pattern's segment is a parameter (`{id}`): it matches any one segment.
fn is_param(segment: &str) -> bool {
    segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}')
}

/// The parameters of `path` when it fits `pattern` (`/v1/files/{id}/content` fits
/// `/v1/files/file-1/content` with `id = file-1`), `None` when it does not.
pub(crate) fn path_params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let (mut a, mut b) = (pattern.split('/'), path.split('/'));
    let mut params = Vec::new();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p == s => {}
            (Some(p), Some(s)) if is_param(p) && !s.is_empty() => {
                params.push((p[1..p.len() - 1].to_owned(), s.to_owned()));
            }
            _ => return None,
        }
    }
}

/// Whether some path matches both patterns: a route clash. A `{*}` segment (the host's
/// catch-all) matches one segment or more.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    let rest = |p: &[&str]| p.last() == Some(&"{*}");
    let fits = |x: &str, y: &str| x == y || is_param(x) || is_param(y);
    let n = a.len().min(b.len());
    let heads_fit = a[..n].iter().zip(&b[..n]).all(|(x, y)| fits(x, y));
    heads_fit
        && (a.len() == b.len()
            || (rest(&a) && b.len() >= a.len())
            || (rest(&b) && a.len() >= b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_reads_a_form_as_its_body_kind_and_content_type_say() {
        let form = Some("multipart/form-data; boundary=x");
        let json = Some("application/json");
        assert!(!RouteBody::Json.reads_form(form));
        assert!(RouteBody::Multipart.reads_form(json));
        assert!(RouteBody::Multipart.reads_form(None));
        assert!(RouteBody::JsonOrMultipart.reads_form(form));
        assert!(RouteBody::JsonOrMultipart.reads_form(Some("Multipart/Form-Data ;boundary=y")));
        assert!(!RouteBody::JsonOrMultipart.reads_form(json));
        assert!(!RouteBody::JsonOrMultipart.reads_form(None));
        for (text, body) in [
            ("json", RouteBody::Json),
            ("multipart", RouteBody::Multipart),
            ("json-or-multipart", RouteBody::JsonOrMultipart),
        ] {
            #[derive(serde::Deserialize)]
            struct Spec {
                body: RouteBody,
            }
            let spec: Spec = toml::from_str(&format!("body = \"{text}\"")).expect(text);
            assert_eq!(spec.body, body);
        }
    }

    #[test]
    fn patterns_match_one_segment_per_parameter() {
        let p = "/v1/chat/completions/{id}";
        assert_eq!(
            path_params(p, "/v1/chat/completions/chatcmpl-1"),
            Some(vec![("id".into(), "chatcmpl-1".into())])
        );
        assert_eq!(path_params(p, "/v1/chat/completions"), None);
        assert_eq!(path_params(p, "/v1/chat/completions/"), None);
        assert_eq!(path_params(p, "/v1/chat/completions/a/b"), None);
        assert_eq!(
            path_params("/v1/files/{id}/content", "/v1/files/f1/content"),
            Some(vec![("id".into(), "f1".into())])
        );
        assert_eq!(path_params("/v1/models", "/v1/models"), Some(vec![]));
        assert!(overlaps("/v1/files/{id}", "/v1/files/{file_id}"));
        assert!(overlaps("/v1/files/{id}", "/v1/files/list"));
        assert!(overlaps("/v1/{x}/completions", "/v1/chat/completions"));
        assert!(!overlaps(
            "/v1/{x}/completions",
            "/v1/chat/completions/{id}"
        ));
        assert!(!overlaps("/v1/files/{id}", "/v1/batches/{id}"));
        assert!(overlaps("/v1/models/{*}", "/v1/models/a/b"));
        assert!(overlaps("/v1/{x}/{y}", "/v1/models/{*}"));
        assert!(!overlaps("/v1/models/{*}", "/v1/models"));
        assert!(!overlaps("/v1/test/misbehave", "/v1/models/{*}"));
    }

    #[test]
    fn route_ids_are_dotted_names() {
        for ok in ["chat.create", "completions", "chat.stored.list", "v2-x_y"] {
            assert!(valid_route_id(ok), "{ok}");
        }
        for bad in ["", "Chat", ".x", "a/b", "a b", &"a".repeat(65)] {
            assert!(!valid_route_id(bad), "{bad}");
        }
    }
}
