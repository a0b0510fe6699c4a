//! Ticket events as Jira, ServiceNow and generic senders post them. Input: the timestamp, the
//! signature and the `X-Hub-Signature` lines, then the body.
#![no_main]

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use hourglass_integrations::{
    inbound::{self, Signed},
    tickets::{Api, HttpTicketSource, SourceSettings},
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn source(api: Api) -> HttpTicketSource {
    HttpTicketSource::new(SourceSettings {
        name: "fuzz".into(),
        pattern: "[A-Z]+-[0-9]+".into(),
        base_url: "https://tickets.example.com".into(),
        api,
        auth: None,
        users: [("557058:alice".to_owned(), "alice".to_owned())].into(),
        groups: BTreeMap::new(),
        timeout: Duration::from_secs(5),
        allow_private: false,
    })
    .expect("a ticket source")
}

fn sources() -> &'static (HttpTicketSource, HttpTicketSource) {
    static S: OnceLock<(HttpTicketSource, HttpTicketSource)> = OnceLock::new();
    S.get_or_init(|| {
        (
            source(Api::Jira),
            source(Api::ServiceNow {
                table: "incident".into(),
                closed_states: vec!["6".into(), "7".into()],
            }),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (h, body) = common::headers(data, 3);
    let signed = Signed {
        timestamp: h[0],
        signature: h[1],
        hub_signature: h[2],
    };
    assert!(
        inbound::verify(b"fuzz-secret", signed, body, 1_800_000_000, true).is_err(),
        "an event not signed with the secret was accepted"
    );
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let (jira, servicenow) = sources();
    let _ = inbound::generic_event(&v);
    let _ = inbound::jira_event(jira, &v);
    let _ = inbound::servicenow_event(servicenow, &v);
});
