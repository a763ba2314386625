//! `azlin keys rotate`: a new SSH key for every VM, proven by a login before the old one goes.
//! A VM that cannot be reached keeps the old key, and then so does this machine: nothing is
//! locked out, and running the command again finishes the job.

use crate::app::App;
use crate::args::{KeysAction, KeysArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use azlin_core::{ExitCode, ProviderKind, VmState};
use azlin_remote::keys::{Identity, ensure_identity};
use azlin_remote::rotate::{add_and_verify, remove_key};
use std::path::{Path, PathBuf};

/// What happened on one VM.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    name: String,
    rotated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The new key's files, next to the current ones until the rotation is committed (a name
/// without a dot: the public half is the private path `with_extension("pub")`).
fn pending_path(key: &Path) -> PathBuf {
    key.with_file_name("azlin_key_rotating")
}

fn remove_pair(private: &Path) {
    for path in [private.to_path_buf(), private.with_extension("pub")] {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "removing a key file: {e}");
        }
    }
}

/// Makes the pending key the current one (private, then public).
fn commit(pending: &Path, key: &Path) -> anyhow::Result<()> {
    std::fs::rename(pending, key)?;
    std::fs::rename(pending.with_extension("pub"), key.with_extension("pub"))?;
    Ok(())
}

/// Runs `azlin keys rotate`.
pub async fn run(app: &App, args: &KeysArgs) -> anyhow::Result<ExitCode> {
    let KeysAction::Rotate = args.action;
    let key_path = app.settings.paths.ssh_key();
    if !key_path.exists() {
        return Err(Failure::usage(format!(
            "there is no key to rotate yet ({}): `azlin new` makes one",
            key_path.display()
        )));
    }
    let (old, _) = ensure_identity(&key_path)?;
    let pending = pending_path(&key_path);
    remove_pair(&pending);
    let (new, _) = ensure_identity(&pending)?;

    let mut outcomes = Vec::new();
    let mut rotated = Vec::new();
    for (record, found) in app
        .locate_recorded(|r| r.provider != ProviderKind::Sim)
        .await?
    {
        let name = record.name.to_string();
        let vm = match found {
            Ok(vm) if vm.state == VmState::Running && !vm.host_key.is_empty() => vm,
            Ok(vm) => {
                outcomes.push(Outcome {
                    name,
                    rotated: false,
                    error: Some(format!(
                        "{}: cannot be reached, keeps the old key",
                        vm.state
                    )),
                });
                continue;
            }
            Err(e) => {
                outcomes.push(Outcome {
                    name,
                    rotated: false,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        match add_and_verify(&vm, &old, &new).await {
            Ok(()) => {
                rotated.push(vm);
                outcomes.push(Outcome {
                    name,
                    rotated: true,
                    error: None,
                });
            }
            Err(e) => outcomes.push(Outcome {
                name,
                rotated: false,
                error: Some(e.to_string()),
            }),
        }
    }
    let complete = outcomes.iter().all(|o| o.rotated);
    if complete {
        finish(&rotated, &old, &new, &mut outcomes).await;
        commit(&pending, &key_path)?;
    } else {
        // Someone keeps the old key: so does this machine. The new key goes again.
        roll_back(&rotated, &old, &new).await;
        remove_pair(&pending);
    }
    report(app, &outcomes)?;
    if complete {
        Ok(ExitCode::Ok)
    } else {
        Err(Failure::with_code(
            ExitCode::Error,
            "the key was not rotated: a VM could not take the new key (see above); every VM still takes the old one — run `azlin keys rotate` again once they can be reached",
        ))
    }
}

/// Removes the old key from every VM (logged in with the new one).
async fn finish(vms: &[azlin_core::Vm], old: &Identity, new: &Identity, outcomes: &mut [Outcome]) {
    for vm in vms {
        if let Err(e) = remove_key(vm, new, old).await
            && let Some(o) = outcomes.iter_mut().find(|o| o.name == vm.name.as_str())
        {
            o.error = Some(format!("the old key is still authorized there: {e}"));
        }
    }
}

/// Removes the new key from the VMs that got it (logged in with the old one).
async fn roll_back(vms: &[azlin_core::Vm], old: &Identity, new: &Identity) {
    for vm in vms {
        if let Err(e) = remove_key(vm, old, new).await {
            tracing::warn!(vm = %vm.name, "removing the unused new key: {e}");
        }
    }
}

fn report(app: &App, outcomes: &[Outcome]) -> anyhow::Result<()> {
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(outcomes)?);
        return Ok(());
    }
    output::table(
        &["VM", "NEW KEY", "NOTE"],
        outcomes.iter().map(|o| {
            vec![
                o.name.clone(),
                if o.rotated { "yes" } else { "no" }.to_string(),
                o.error.clone().unwrap_or_default(),
            ]
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_key_never_shares_a_file_with_the_current_one() {
        let key = Path::new("/home/me/.ssh/azlin_key");
        let pending = pending_path(key);
        assert_ne!(pending, key);
        assert_ne!(pending.with_extension("pub"), key.with_extension("pub"));
        assert_eq!(pending.parent(), key.parent());
    }
}
