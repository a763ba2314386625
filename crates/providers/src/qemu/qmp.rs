//! A minimal client of the QEMU Machine Protocol (QMP): enough to ask a VM to power down, and
//! to save, load and delete its snapshots through the human monitor.
//!
//! QMP is JSON lines on the VM's unix socket: QEMU greets, the client negotiates capabilities,
//! then each command gets a `return` or an `error`; asynchronous `event`s may come in between.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A QMP conversation that did not go as expected.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached or broke.
    #[error("QMP socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// QEMU answered with an error or something that is not QMP.
    #[error("QMP: {0}")]
    Protocol(String),
    /// QEMU did not answer in time.
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
}

/// Runs `command` (without arguments) on the QMP socket at `socket`, within `timeout`.
pub async fn execute(socket: &Path, command: &str, timeout: Duration) -> Result<(), QmpError> {
    let request = serde_json::json!({ "execute": command });
    tokio::time::timeout(timeout, converse(socket, request))
        .await
        .map_err(|_| QmpError::Timeout(timeout))?
        .map(drop)
}

/// Runs a human-monitor command line (`savevm NAME`, `loadvm NAME`, `delvm NAME`), within
/// `timeout`. The monitor answers success with nothing and a failure with its message.
pub async fn human(socket: &Path, command_line: &str, timeout: Duration) -> Result<(), QmpError> {
    let request = serde_json::json!({
        "execute": "human-monitor-command",
        "arguments": { "command-line": command_line },
    });
    let answer = tokio::time::timeout(timeout, converse(socket, request))
        .await
        .map_err(|_| QmpError::Timeout(timeout))??;
    match answer.as_str().map(str::trim) {
        None | Some("") => Ok(()),
        Some(message) => Err(QmpError::Protocol(format!("{command_line}: {message}"))),
    }
}

/// Negotiates, sends `request`, and returns its `return` value.
async fn converse(socket: &Path, request: Value) -> Result<Value, QmpError> {
    let io = |source| QmpError::Io {
        path: socket.display().to_string(),
        source,
    };
    let stream = UnixStream::connect(socket).await.map_err(io)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = next_message(&mut lines).await.map_err(io)?;
    if greeting.get("QMP").is_none() {
        return Err(QmpError::Protocol(format!(
            "unexpected greeting {greeting}"
        )));
    }
    let mut answer = Value::Null;
    for request in [
        serde_json::json!({ "execute": "qmp_capabilities" }),
        request,
    ] {
        let name = request["execute"].as_str().unwrap_or_default().to_string();
        write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(io)?;
        loop {
            let mut reply = next_message(&mut lines).await.map_err(io)?;
            if let Some(value) = reply.get_mut("return") {
                answer = value.take();
                break;
            }
            if let Some(error) = reply.get("error") {
                return Err(QmpError::Protocol(format!("{name}: {error}")));
            }
            // An event (e.g. POWERDOWN): not the answer.
        }
    }
    Ok(answer)
}

/// The next JSON message.
async fn next_message(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> std::io::Result<Value> {
    loop {
        let Some(line) = lines.next_line().await? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed the connection",
            ));
        };
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QEMU answering one conversation; returns what the client asked.
    async fn fake_qemu(listener: UnixListener, answer: &'static str) -> Vec<String> {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
            .await
            .unwrap();
        let mut asked = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            asked.push(line.clone());
            if line.contains("qmp_capabilities") {
                write.write_all(b"{\"return\": {}}\r\n").await.unwrap();
            } else {
                write
                    .write_all(b"{\"timestamp\": {}, \"event\": \"POWERDOWN\"}\r\n")
                    .await
                    .unwrap();
                write.write_all(answer.as_bytes()).await.unwrap();
            }
        }
        asked
    }

    #[tokio::test]
    async fn negotiates_then_runs_the_command_past_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(
            UnixListener::bind(&path).unwrap(),
            "{\"return\": {}}\r\n",
        ));
        execute(&path, "system_powerdown", Duration::from_secs(5))
            .await
            .unwrap();
        let asked = server.await.unwrap();
        assert_eq!(asked.len(), 2);
        assert!(asked[0].contains("qmp_capabilities"));
        assert!(asked[1].contains("system_powerdown"));
    }

    #[tokio::test]
    async fn errors_and_missing_sockets_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(
            UnixListener::bind(&path).unwrap(),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n",
        ));
        let err = execute(&path, "system_powerdown", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Protocol(ref m) if m.contains("GenericError")));
        server.await.unwrap();
        let err = execute(
            &dir.path().join("missing.sock"),
            "quit",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, QmpError::Io { .. }));
    }
}
