//! Minimal HTTP/1.1 for `wsload publish`: writes a `POST` with a body and parses the response
//! head (status, `Content-Length`, `Connection: close`). Enough for a keep-alive connection
//! to an admin API whose answers carry a `Content-Length`; chunked answers are reported as
//! unsupported.

use anyhow::{Context, bail};

/// Largest response head accepted.
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// Appends a `POST path` request with `body` to `out`.
pub fn write_post(out: &mut Vec<u8>, host: &str, bearer: Option<&str>, path: &str, body: &[u8]) {
    let auth = bearer.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    out.extend_from_slice(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// The parts of a response head the publisher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head including the blank line.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// Body length.
    pub content_length: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while it is incomplete.
pub fn parse_response_head(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            bail!("response head larger than {MAX_HEAD_BYTES} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = 0;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("Transfer-Encoding {value} is not supported");
        }
    }
    Ok(Some(ResponseHead {
        head_len: end + 4,
        status,
        content_length,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_post() {
        let mut out = Vec::new();
        write_post(&mut out, "127.0.0.1:9090", None, "/publish/a", b"0:xx");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /publish/a HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n"));
        assert!(text.contains("Content-Length: 4\r\n\r\n0:xx"));
        assert!(!text.contains("Authorization"));
    }

    #[test]
    fn writes_the_admin_token_as_a_bearer() {
        let mut out = Vec::new();
        write_post(
            &mut out,
            "h",
            Some("s3cret-token-value"),
            "/publish/a",
            b"x",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nAuthorization: Bearer s3cret-token-value\r\n"));
    }

    #[test]
    fn parses_heads() {
        let head = parse_response_head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            head,
            ResponseHead {
                head_len: 44,
                status: 202,
                content_length: 0,
                close: false
            }
        );
        let head = parse_response_head(
            b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (404, 3, true)
        );
        assert!(
            parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
    }

    #[test]
    fn waits_for_a_complete_head() {
        assert_eq!(parse_response_head(b"HTTP/1.1 202 Acc").unwrap(), None);
        assert_eq!(parse_response_head(b"").unwrap(), None);
    }

    #[test]
    fn rejects_bad_heads() {
        for bad in [
            &b"SSH-2.0 hello\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 \xff\r\n\r\n",
        ] {
            assert!(parse_response_head(bad).is_err(), "{bad:?}");
        }
        assert!(parse_response_head(&vec![b'a'; MAX_HEAD_BYTES + 1]).is_err());
    }
}
