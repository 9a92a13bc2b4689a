//! docs/plugins.md's five-minute plugin (the SDK README's example): `POST /v1/shout` with
//! `{"model", "text"}` answers `{"shout": ...}`, what the model says, in capitals.

use cinder_sdk::inference::{ChatMessage, Event, GenerateRequest, Sampling};
use cinder_sdk::{Error, Host, Request, Route, Serve, invalid_request};

#[derive(Default)]
struct Shout;

impl Serve for Shout {
    fn serve(&self, _route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        let body: serde_json::Value = cinder_sdk::parse_body(&request.body)?;
        let (Some(model), Some(text)) = (body["model"].as_str(), body["text"].as_str()) else {
            return Err(invalid_request("`model` and `text` are required", Some("text")));
        };
        let say = ChatMessage { role: "user".into(), content: format!("Say: {text}") };
        let prompt = host.apply_chat_template(model, &[say], true)?;
        let mut generate = GenerateRequest::new(model, host.tokenize(model, &prompt, true)?);
        generate.max_tokens = Some(32);
        generate.sampling = Sampling::greedy();
        let generation = host.generate(&generate)?;
        let mut said = String::new();
        while let Some(Event::Delta(d)) = generation.next()? {
            said.push_str(&d.text);
        }
        host.respond_json(200, &serde_json::json!({"shout": said.to_uppercase()}))
    }
}

cinder_sdk::export_chat_plugin!(Shout);

#[cfg(test)]
mod tests {
    use cinder_sdk::testing::{FakeHost, request};
    use cinder_sdk::{Route, Serve};

    #[test]
    fn shouts() {
        let host = FakeHost::new("m").generating(&["hel", "lo"]);
        let body = serde_json::json!({"model": "m", "text": "hi"});
        super::Shout
            .serve(&Route::new("shout"), request("POST", "/v1/shout", &body), &host)
            .unwrap();
        assert_eq!(host.response().unwrap().1["shout"], "HELLO");
    }

    #[test]
    fn text_is_required() {
        let host = FakeHost::new("m");
        let body = serde_json::json!({"model": "m"});
        let e = super::Shout
            .serve(&Route::new("shout"), request("POST", "/v1/shout", &body), &host)
            .unwrap_err();
        assert!(
            matches!(e, cinder_sdk::Error::InvalidRequest(d) if d.param.as_deref() == Some("text"))
        );
    }
}
