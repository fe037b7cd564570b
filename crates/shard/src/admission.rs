//! Whether and how an upgrade request is admitted: what it subscribes to (`/echo`,
//! `/<channel>` or `/?channels=a,b`), where each subscription resumes (`since=`), the
//! message framing (`format=`), the channel limit, and the origin/token rules.
//! Returns the 101 answer to send, or the HTTP refusal.

use crate::auth::Credentials;
use crate::config::ShardConfig;
use crate::conn::Framing;
use crate::handshake_failure::HandshakeFailure;
use crate::position::Since;
use crate::token_grant::Grant;
use ringcast_proto::{
    DeflateParams, PlainGet, PlainRoute, Route, Upgrade, http_error_response, is_valid_channel,
    negotiate_deflate,
};
use std::borrow::Cow;

/// An HTTP refusal of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Status code.
    pub(crate) status: u16,
    /// Reason phrase.
    pub(crate) phrase: &'static str,
    /// Why (`ringcast_handshake_failures_total{reason}`).
    pub(crate) reason: HandshakeFailure,
    /// Short body.
    pub(crate) body: &'static str,
}

impl Refusal {
    fn new(status: u16, reason: HandshakeFailure, body: &'static str) -> Self {
        let phrase = match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            _ => "Error",
        };
        Refusal {
            status,
            phrase,
            reason,
            body,
        }
    }

    /// The complete HTTP response.
    pub(crate) fn response(&self) -> Vec<u8> {
        http_error_response(self.status, self.phrase, self.body)
    }
}

/// One channel a connection subscribes to, and where it resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The channel.
    pub(crate) name: String,
    /// What it asks for before the live stream (None: only new messages).
    pub(crate) since: Option<Since>,
}

/// What an admitted connection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Echo its messages.
    Echo,
    /// Subscribe to these channels (may be empty with client commands on).
    Channels(Vec<Subscription>),
}

/// An admitted upgrade.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// What the connection does.
    pub(crate) target: Target,
    /// The 101 answer.
    pub(crate) response: Vec<u8>,
    /// Negotiated permessage-deflate, if any.
    pub(crate) deflate: Option<DeflateParams>,
    /// How its messages are framed.
    pub(crate) framing: Framing,
    /// What its token grants, if a token was required.
    pub(crate) grant: Option<Grant>,
}

/// Admits `upgrade` at shard time `now_ms`: its target, the 101 response, and the
/// compression negotiated (when `cfg.compression` is on and the client offered it).
pub(crate) fn admit(
    cfg: &ShardConfig,
    upgrade: &Upgrade,
    now_ms: u64,
) -> Result<Admitted, Refusal> {
    let target = target_of(cfg, upgrade)?;
    let framing = match upgrade.query_param("format") {
        None | Some("raw") => Framing::Raw,
        Some("json") => Framing::Json,
        Some(_) => {
            return Err(Refusal::new(
                400,
                HandshakeFailure::BadFormat,
                "format must be raw or json\n",
            ));
        }
    };
    let creds = Credentials {
        origin: upgrade.origin.as_deref(),
        query_token: upgrade.query_param("token"),
        protocols: &upgrade.protocols,
    };
    let unix_now = cfg.unix_secs(now_ms);
    let names: Vec<&str> = match &target {
        Target::Echo => vec!["echo"],
        Target::Channels(list) => list.iter().map(|s| s.name.as_str()).collect(),
    };
    let admission = cfg.auth.admit(&creds, &names, unix_now).map_err(|err| {
        let body = match err.status() {
            401 => "missing, forged or expired token\n",
            _ => "not allowed\n",
        };
        Refusal::new(err.status(), HandshakeFailure::Auth(err), body)
    })?;
    let negotiated = if cfg.compression {
        negotiate_deflate(&upgrade.extensions)
    } else {
        None
    };
    let response = upgrade.response_with(
        admission.protocol,
        negotiated.as_ref().map(|(_, h)| h.as_str()),
    );
    Ok(Admitted {
        target,
        response,
        deflate: negotiated.map(|(params, _)| params),
        framing,
        grant: admission.grant,
    })
}

/// Admits a plain `GET /sse/<channel>` or `/poll/<channel>`: the same origin and token
/// rules as an upgrade (the token comes as `?token=`). Ok carries the token's grant, if a
/// token was required.
pub(crate) fn admit_plain(
    cfg: &ShardConfig,
    get: &PlainGet,
    now_ms: u64,
) -> Result<Option<Grant>, Refusal> {
    let creds = Credentials {
        origin: get.origin.as_deref(),
        query_token: get.query_param("token"),
        protocols: &[],
    };
    let (PlainRoute::Sse(channel) | PlainRoute::Poll(channel)) = &get.route;
    let unix_now = cfg.unix_secs(now_ms);
    cfg.auth
        .admit(&creds, &[channel.as_str()], unix_now)
        .map(|admission| admission.grant)
        .map_err(|err| Refusal::new(err.status(), HandshakeFailure::Auth(err), "not allowed\n"))
}

/// `text` with the two escapes a URL library writes into `channels=` and `since=` lists
/// (`%2C` for `,` and `%3A` for `:`) undone; every other byte is kept as it is (channel
/// names and positions use only URL-safe characters).
pub(crate) fn unescape_list(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or("");
        match escape.to_ascii_uppercase().as_str() {
            "%2C" => out.push(','),
            "%3A" => out.push(':'),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The `since=` list: one entry per channel, in the order the channels are named
/// (an empty entry resumes nothing), `last` or `<epoch>:<offset>`.
fn since_list(upgrade: &Upgrade, channels: usize) -> Result<Vec<Option<Since>>, Refusal> {
    let bad = || {
        Refusal::new(
            400,
            HandshakeFailure::BadSince,
            "since must be last or <epoch>:<offset>, one per channel\n",
        )
    };
    let Some(list) = upgrade.query_param("since").map(unescape_list) else {
        return Ok(vec![None; channels]);
    };
    let mut out = Vec::with_capacity(channels);
    for item in list.split(',') {
        if out.len() == channels {
            return Err(bad());
        }
        out.push(match item {
            "" => None,
            item => Some(Since::parse(item).ok_or_else(bad)?),
        });
    }
    out.resize(channels, None);
    Ok(out)
}

fn target_of(cfg: &ShardConfig, upgrade: &Upgrade) -> Result<Target, Refusal> {
    let list = match &upgrade.route {
        Route::Echo => return Ok(Target::Echo),
        Route::Channel(name) => {
            let since = since_list(upgrade, 1)?.pop().flatten();
            let name = name.clone();
            return Ok(Target::Channels(vec![Subscription { name, since }]));
        }
        Route::Root => unescape_list(upgrade.query_param("channels").unwrap_or("")),
    };
    let names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
    let since = since_list(upgrade, names.len())?;
    let mut channels: Vec<Subscription> = Vec::new();
    for (name, since) in names.into_iter().zip(since) {
        if !is_valid_channel(name) {
            return Err(Refusal::new(
                400,
                HandshakeFailure::BadChannel,
                "invalid channel name\n",
            ));
        }
        if !channels.iter().any(|c| c.name == name) {
            if channels.len() == cfg.max_channels_per_conn {
                return Err(Refusal::new(
                    400,
                    HandshakeFailure::TooManyChannels,
                    "too many channels\n",
                ));
            }
            channels.push(Subscription {
                name: name.to_owned(),
                since,
            });
        }
    }
    if channels.is_empty() && !cfg.client_commands {
        return Err(Refusal::new(
            404,
            HandshakeFailure::NotFound,
            "name a channel: /<channel> or /?channels=a,b\n",
        ));
    }
    Ok(Target::Channels(channels))
}
