//! Ctrl-C (SIGINT) and SIGTERM, listened for from the start of a command, so that a signal
//! that comes early is still seen when the command gets to it.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The interrupt signals of this process, from the moment it is made.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Starts listening: from now on SIGINT and SIGTERM no longer end the process.
    pub fn listen() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
