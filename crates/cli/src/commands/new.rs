//! `azlin new`: the 9 steps of seed 000 — prerequisites, authentication, SSH key, provisioning,
//! readiness, repositories (steps 4–6 through the control plane), notification, info, connect.

use crate::app::{App, ControlPlane};
use crate::args::{NewArgs, OutputFormat};
use crate::commands::{connect, prerequisites, repos};
use crate::failure::Failure;
use crate::interrupt::Interrupts;
use crate::notify;
use crate::progress::{Progress, Stage};
use azlin_control::orchestrator::SubmitError;
use azlin_control::orphans::{Orphan, Retry, delete_with_retry};
use azlin_control::store::StoreError;
use azlin_control::{LaunchOptions, ProviderSource};
use azlin_core::event::{
    CreateComplete, CreateFailed, CreateRequested, Event, Request, SCHEMA, Stage as EventStage,
};
use azlin_core::{ExitCode, ProviderKind, VmName, VmSpec, new_id, now_rfc3339};
use azlin_remote::Identity;
use azlin_remote::attach::Session;
use std::collections::BTreeMap;
use std::time::Instant;

impl NewArgs {
    /// What these flags ask the launch planner for.
    fn launch_options(&self) -> LaunchOptions {
        let NewArgs {
            provider,
            name,
            repos,
            size,
            region,
            resource_group,
            image,
            template,
            cloud_init,
            ca_certs,
            tags,
            count,
            no_connect: _,
            x11: _,
            allow_ssh_from_anywhere: _,
            pool: _,
            gh_token_file: _,
        } = self;
        LaunchOptions {
            provider: provider.clone(),
            name: name.clone(),
            repos: repos.clone(),
            size: size.clone(),
            region: region.clone(),
            resource_group: resource_group.clone(),
            image: image.clone(),
            template: template.clone(),
            cloud_init: cloud_init.clone(),
            ca_certs: ca_certs.clone(),
            tags: tags.clone(),
            count: *count,
        }
    }
}

/// Turns what was asked for, a template and the config into validated specs (one per VM).
/// Everything a user can get wrong is refused here (exit 64), before anything is made.
pub fn plan(app: &App, options: &LaunchOptions) -> anyhow::Result<Vec<VmSpec>> {
    app.settings
        .planner()
        .plan(options)
        .map_err(|e| Failure::usage(e.0))
}

/// An Azure VM without `[azure] ssh_source_prefix` gets an NSG opening SSH to the whole
/// internet: only when asked for explicitly. Refused (exit 64) before anything is made.
fn refuse_ssh_from_anywhere(app: &App, specs: &[VmSpec], allowed: bool) -> anyhow::Result<()> {
    let azure = specs.iter().any(|s| s.provider == ProviderKind::Azure);
    if !azure || allowed || app.settings.config.azure.ssh_source_prefix.is_some() {
        return Ok(());
    }
    Err(Failure::usage(
        "an Azure VM's SSH port (22) would be open to every address on the internet: set \
         ssh_source_prefix = \"YOUR.ADDRESS/32\" under [azure] in the config to allow only \
         yours, or pass --allow-ssh-from-anywhere to accept it",
    ))
}

/// Refuses (exit 64, before anything is made) specs whose names the state store already has.
pub async fn refuse_taken_names(app: &App, specs: &[VmSpec]) -> anyhow::Result<()> {
    let store = app.store()?;
    for spec in specs {
        if let Some(existing) = store.vm(&spec.name).await? {
            return Err(Failure::usage(StoreError::name_taken(existing).to_string()));
        }
    }
    Ok(())
}

/// A `vm.create.request` for each spec, its VM reached with `identity`.
pub fn create_requests(specs: &[VmSpec], identity: &Identity, requested_by: &str) -> Vec<Request> {
    specs
        .iter()
        .map(|spec| {
            Request::Create(CreateRequested {
                schema: SCHEMA,
                request_id: new_id(),
                spec: spec.clone(),
                ssh_public_key: identity.public_openssh.clone(),
                requested_by: requested_by.to_string(),
                created_at: now_rfc3339(),
            })
        })
        .collect()
}

/// Shows a single VM's events as successive stages.
struct StageView {
    current: Option<Stage>,
}

impl StageView {
    fn start(&mut self, progress: &Progress, label: String) {
        if let Some(stage) = self.current.take() {
            stage.done("");
        }
        self.current = Some(progress.stage(label));
    }

    fn done(&mut self, message: &str) {
        if let Some(stage) = self.current.take() {
            stage.done(message);
        }
    }

    fn show(&mut self, progress: &Progress, event: &Event) {
        match event {
            Event::CreateStatus(s) => match s.stage {
                EventStage::Provisioning => {
                    self.start(progress, format!("Provisioning: {}", s.message))
                }
                EventStage::Provisioned => self.done(&s.message),
                EventStage::WaitingForSsh => self.start(progress, "Waiting for SSH".into()),
                EventStage::SshReady => self.done(&s.message),
                EventStage::WaitingForCloudInit => {
                    self.start(progress, "Waiting for cloud-init".into())
                }
                EventStage::CloudInitDone => self.done(&s.message),
                EventStage::CloningRepos if s.warning => {
                    if let Some(stage) = &self.current {
                        stage.warn(&s.message);
                    }
                }
                EventStage::CloningRepos => match &self.current {
                    Some(stage) => stage.update(&s.message),
                    None => self.start(progress, "Repositories".into()),
                },
                EventStage::ReposDone => self.done(&s.message),
                EventStage::Retrying => {
                    if let Some(stage) = self.current.take() {
                        stage.done_with_warning(&s.message);
                    }
                }
                _ => {}
            },
            Event::CreateFailed(f) => {
                if let Some(stage) = self.current.take() {
                    stage.fail(headline(&f.error.message));
                }
            }
            _ => {}
        }
    }
}

/// Runs `azlin new`.
pub async fn run(app: &App, args: &NewArgs) -> anyhow::Result<ExitCode> {
    if let Some(pool) = &args.pool {
        return from_pool(app, args, pool).await;
    }
    let begun = Instant::now();
    let mut specs = plan(app, &args.launch_options())?;
    // With a GitHub token, step 6 runs from here once the VMs are ready: the token never
    // travels on the bus to a worker.
    let token = repos::github_token(
        args.gh_token_file.as_deref(),
        app.settings.config.github.token_file.as_deref(),
    )
    .await?;
    let mut repos_here = Vec::new();
    if token.is_some() {
        // Every VM of a fleet clones the same repositories.
        for spec in &mut specs {
            repos_here = std::mem::take(&mut spec.repos);
        }
    }
    refuse_ssh_from_anywhere(app, &specs, args.allow_ssh_from_anywhere)?;
    refuse_taken_names(app, &specs).await?;
    let provider_kind = specs[0].provider;
    let progress = Progress::new(app.settings.progress_tty);
    // From here on Ctrl-C cancels the launch and removes what it made (exit 130).
    let mut interrupts = Interrupts::listen()?;

    // Steps 1–3: prerequisites, authentication, SSH key (and the base image of local VMs).
    let identity = tokio::select! {
        identity = prerequisites::preflight(app, &progress, provider_kind, specs[0].image) => identity?,
        () = interrupts.next() => {
            progress.note("⚠ interrupted before any VM was requested; nothing is left behind");
            return Err(Failure::with_code(ExitCode::Interrupted, "interrupted"));
        }
    };

    // Steps 4–6 through the control plane.
    let mut control = app.control_plane(&identity, specs.len()).await?;
    let requested_by = format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "root".into()),
        crate::app::hostname()
    );
    let requests = create_requests(&specs, &identity, &requested_by);
    // Another `azlin new` may have taken a name since the check above: still a usage error,
    // and the other launch's record is left alone.
    let (mut subscription, pending) = control
        .orchestrator
        .submit(control.bus.as_ref(), &requests)
        .await
        .map_err(|e| match e {
            SubmitError::Store(e @ StoreError::NameTaken { .. }) => Failure::usage(e.to_string()),
            e => e.into(),
        })?;
    // In-process, this process does the launch: marked, a launch killed outright is found by
    // `azlin cleanup`.
    let _in_flight = app.settings.nats.is_none().then(|| {
        azlin_control::orphans::InFlight::mark(
            &app.settings.paths.state_dir,
            requests.iter().map(Request::request_id),
        )
    });
    let mut milestones = Milestones::default();
    let mut view = StageView { current: None };
    let mut lines: BTreeMap<String, Stage> = BTreeMap::new();
    let follow = control
        .orchestrator
        .follow(&mut subscription, pending, |event| {
            milestones.record(begun, event);
            if specs.len() == 1 {
                view.show(&progress, event);
            } else {
                fleet_line(&progress, &mut lines, event);
            }
        });
    let followed = tokio::select! {
        ended = follow => Some(ended),
        () = interrupts.next() => None,
    };
    let Some(ended) = followed else {
        if let Some(stage) = view.current.take() {
            stage.fail("interrupted");
        }
        for (_, line) in lines {
            line.fail("interrupted");
        }
        return cancel_launch(app, &progress, &mut control, &specs, &mut interrupts).await;
    };
    control.shutdown().await;

    let mut completes = Vec::new();
    let mut failures = Vec::new();
    for event in ended.into_values() {
        match event {
            Event::CreateComplete(c) => completes.push(c),
            Event::CreateFailed(f) => failures.push(f),
            _ => {}
        }
    }
    completes.sort_by(|a, b| a.vm.name.cmp(&b.vm.name));
    if failures.is_empty() && completes.len() != specs.len() {
        return Err(Failure::with_code(
            ExitCode::Error,
            "the control plane stopped before every VM was ready",
        ));
    }

    if token.is_some() {
        for complete in &mut completes {
            let (_, vm) = app.locate(&complete.vm.name).await?;
            let warnings =
                repos::github_and_repos(&progress, &vm, &identity, token.as_ref(), &repos_here)
                    .await?;
            complete.warnings.extend(warnings);
        }
    }

    // Step 7: notification (success and failure alike).
    let summary = match (completes.len(), failures.len()) {
        (n, 0) => format!("{n} VM(s) ready"),
        (n, f) => format!("{n} VM(s) ready, {f} failed"),
    };
    notify::send(
        &app.settings,
        &progress,
        failures.is_empty(),
        &specs[0].name,
        &summary,
    )
    .await;

    // Step 8: info.
    print_info(app, &completes, &failures, &milestones)?;
    if let Some(code) = failure_exit(&progress, &failures) {
        return Ok(code);
    }

    connect_step(app, args, &progress, &completes).await
}

/// Step 9: connect to the one VM made, when asked for and on a terminal.
async fn connect_step(
    app: &App,
    args: &NewArgs,
    progress: &Progress,
    completes: &[CreateComplete],
) -> anyhow::Result<ExitCode> {
    let NewArgs {
        no_connect, x11, ..
    } = args;
    if *no_connect || completes.len() != 1 || app.settings.output == OutputFormat::Json {
        return Ok(ExitCode::Ok);
    }
    if !app.settings.interactive {
        progress.note(&format!(
            "not a terminal: skipping the SSH session (connect with `azlin connect {}`)",
            completes[0].vm.name
        ));
        return Ok(ExitCode::Ok);
    }
    let vm = &completes[0].vm;
    let access = connect::access_for(app, vm);
    if *x11 {
        let (_, located) = app.locate(&vm.name).await?;
        connect::prepare_x11(app, &located).await?;
    }
    connect::attach(&access, &vm.name, &Session::Tmux, *x11).await
}

/// What `new --pool` cannot apply to a VM that has already booted.
fn refuse_with_pool(args: &NewArgs) -> anyhow::Result<()> {
    let NewArgs {
        provider,
        name,
        size,
        region,
        resource_group,
        image,
        template,
        cloud_init,
        ca_certs,
        tags,
        count,
        ..
    } = args;
    let boot_time = [
        ("--provider", provider.is_some()),
        ("--name", name.is_some()),
        ("--size", size.is_some()),
        ("--region", region.is_some()),
        ("--resource-group", resource_group.is_some()),
        ("--image", image.is_some()),
        ("--template", template.is_some()),
        ("--cloud-init", cloud_init.is_some()),
        ("--ca-cert", !ca_certs.is_empty()),
        ("--tag", !tags.is_empty()),
        ("--count", *count != 1),
    ];
    match boot_time.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(Failure::usage(format!(
            "{flag} cannot be used with --pool: a pool VM has already booted as its pool \
             says ([pool.NAME] in the config); leave out --pool to boot a VM of your own"
        ))),
        None => Ok(()),
    }
}

/// `azlin new --pool NAME`: takes a ready VM of the pool and makes it the user's, then applies
/// what can be applied after boot (repositories) over SSH, notifies, prints the
/// VM and connects. The pool boots a replacement in the background.
async fn from_pool(app: &App, args: &NewArgs, pool: &str) -> anyhow::Result<ExitCode> {
    refuse_with_pool(args)?;
    let planner = app.settings.planner();
    let spec = planner.pool_vm(pool).map_err(|e| Failure::usage(e.0))?;
    let with_repos = LaunchOptions {
        provider: Some(spec.provider.to_string()),
        repos: args.repos.clone(),
        ..LaunchOptions::default()
    };
    let repos = plan(app, &with_repos)?.remove(0).repos;
    let progress = Progress::new(app.settings.progress_tty);
    let identity = prerequisites::preflight(app, &progress, spec.provider, spec.image).await?;
    let control = app.control_plane(&identity, 1).await?;
    let pools = super::pool::pools(app, &control, &identity);
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let stage = progress.stage(format!("Taking a VM from pool '{pool}'"));
    let taken = pools.take(pool, &user, true).await;
    control.shutdown().await;
    super::pool::spawn_refill(&app.settings, pool);
    let Some(record) = taken? else {
        stage.fail("no ready VM");
        return Err(Failure::with_code(
            ExitCode::Error,
            format!(
                "pool '{pool}' has no ready VM: it is being refilled (`azlin pool status {pool}`); \
                 try again shortly, or leave out --pool to boot a VM of your own"
            ),
        ));
    };
    stage.done(&format!("{} is yours", record.name));
    let vm = record.to_vm();
    let token = repos::github_token(
        args.gh_token_file.as_deref(),
        app.settings.config.github.token_file.as_deref(),
    )
    .await?;
    let warnings =
        repos::github_and_repos(&progress, &vm, &identity, token.as_ref(), &repos).await?;
    let complete = CreateComplete {
        schema: SCHEMA,
        request_id: record.request_id.clone(),
        vm: azlin_core::event::VmEndpoint {
            name: vm.name.clone(),
            provider: vm.provider,
            address: vm.address.clone(),
            ssh_port: vm.ssh_port,
            user: vm.user.clone(),
            host_key: vm.host_key.clone(),
        },
        timings: record.timings.clone(),
        warnings,
        details: record.details.clone(),
    };
    notify::send(
        &app.settings,
        &progress,
        true,
        &vm.name,
        "1 VM(s) ready (from a warm pool)",
    )
    .await;
    print_info(
        app,
        std::slice::from_ref(&complete),
        &[],
        &Milestones::default(),
    )?;
    connect_step(app, args, &progress, &[complete]).await
}

/// After a Ctrl-C: gives up the launch, removes every VM it made (retrying; what cannot be
/// removed is recorded as an orphan) and its records, says what was removed, and ends with exit
/// 130. A second Ctrl-C leaves at once, naming what remains and how to remove it.
async fn cancel_launch(
    app: &App,
    progress: &Progress,
    control: &mut ControlPlane,
    specs: &[VmSpec],
    interrupts: &mut Interrupts,
) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    if !control.abandon().await {
        // NATS: the workers elsewhere go on with the requests; nothing here can stop them.
        progress.note(&format!(
            "⚠ interrupted: the request(s) stay with the workers; remove the VM(s) when they are made: {}",
            names
                .iter()
                .map(|n| format!("`azlin delete {n} --yes`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Err(Failure::with_code(ExitCode::Interrupted, "interrupted"));
    }
    progress.note(
        "⚠ interrupted: cancelling the launch and removing what it made… (Ctrl-C again to leave at once)",
    );
    let remaining = std::sync::Mutex::new(
        specs
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<VmName>>(),
    );
    let cleanup = remove_launched(app, progress, &control.orchestrator, specs, &remaining);
    let outcome = tokio::select! {
        outcome = cleanup => Some(outcome),
        () = interrupts.next() => None,
    };
    let Some((removed, failed)) = outcome else {
        let left: Vec<VmName> = remaining.lock().map(|l| l.clone()).unwrap_or_default();
        progress.note("⚠ interrupted again: leaving now, without removing the rest");
        for name in &left {
            progress.note(&format!(
                "  left behind: VM '{name}' (remove it with `azlin delete {name} --yes`)"
            ));
        }
        return Err(Failure::with_code(
            ExitCode::Interrupted,
            "interrupted twice: cleanup was cut short",
        ));
    };
    if removed.is_empty() && failed.is_empty() {
        progress.note("  nothing had been created; nothing is left behind");
    }
    for what in &removed {
        progress.note(&format!("  removed {what}"));
    }
    for (name, why) in &failed {
        progress.note(&format!(
            "  could not remove VM '{name}': {why}; recorded in {} — remove it with `azlin delete {name} --yes`",
            app.settings.orphans().path().display()
        ));
    }
    if failed.is_empty() {
        progress.note("  nothing is left behind (check with `azlin list`)");
    }
    Err(Failure::with_code(
        ExitCode::Interrupted,
        "interrupted: the launch was cancelled",
    ))
}

/// Deletes each VM of `specs` that its provider has (with retries) and forgets its record;
/// what was removed, and the VMs that could not be (recorded as orphans). `remaining` keeps
/// the names not yet dealt with.
async fn remove_launched(
    app: &App,
    progress: &Progress,
    orchestrator: &azlin_control::Orchestrator,
    specs: &[VmSpec],
    remaining: &std::sync::Mutex<Vec<VmName>>,
) -> (Vec<String>, Vec<(VmName, String)>) {
    let store = orchestrator.store();
    let orphans = app.settings.orphans();
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for spec in specs {
        let name = &spec.name;
        let outcome = match app.providers.provider(spec.provider) {
            Ok(provider) => match provider.get(name).await {
                Ok(Some(_)) => delete_with_retry(provider.as_ref(), name, Retry::default())
                    .await
                    .map(|report| report.removed),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(gone) => {
                removed.extend(gone);
                if let Err(e) = store.forget(name).await {
                    progress.note(&format!("  the record of '{name}' stays: {e}"));
                }
            }
            Err(e) => {
                orphans.record_or_log(&Orphan::vm(spec.provider, name, &e.message));
                failed.push((name.clone(), e.message));
            }
        }
        if let Ok(mut left) = remaining.lock() {
            left.retain(|n| n != name);
        }
    }
    if let Err(e) = orchestrator.write_state().await {
        tracing::warn!("writing the deployment state: {e}");
    }
    (removed, failed)
}

/// Milliseconds from the start of `azlin new` to each VM's milestones (for `-o json` and the
/// benchmark): `ssh_ready`, `cloud_init_done`, `ready`.
#[derive(Default)]
struct Milestones(BTreeMap<String, BTreeMap<&'static str, u64>>);

impl Milestones {
    fn record(&mut self, begun: Instant, event: &Event) {
        let milestone = match event {
            Event::CreateStatus(s) if s.stage == EventStage::SshReady => "ssh_ready",
            Event::CreateStatus(s) if s.stage == EventStage::CloudInitDone => "cloud_init_done",
            Event::CreateComplete(_) => "ready",
            _ => return,
        };
        let ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0
            .entry(event.name().to_string())
            .or_default()
            .insert(milestone, ms);
    }
}

/// One line per VM of a fleet.
fn fleet_line(progress: &Progress, lines: &mut BTreeMap<String, Stage>, event: &Event) {
    let name = event.name().to_string();
    let line = lines
        .entry(name.clone())
        .or_insert_with(|| progress.stage(name.clone()));
    match event {
        Event::CreateStatus(s) if s.warning => line.warn(&s.message),
        Event::CreateStatus(s) => line.update(s.stage.as_str()),
        Event::CreateComplete(c) => {
            if let Some(line) = lines.remove(&name) {
                line.done(&format!("ready at {}", c.vm.address));
            }
        }
        Event::CreateFailed(f) => {
            if let Some(line) = lines.remove(&name) {
                line.fail(headline(&f.error.message));
            }
        }
        _ => {}
    }
}

/// Prints each ready VM (step 8) as a table or JSON.
fn print_info(
    app: &App,
    completes: &[CreateComplete],
    failures: &[CreateFailed],
    milestones: &Milestones,
) -> anyhow::Result<()> {
    if app.settings.output == OutputFormat::Json {
        let vms: Vec<_> = completes
            .iter()
            .map(|c| {
                let access = connect::access_for(app, &c.vm);
                serde_json::json!({
                    "name": c.vm.name,
                    "provider": c.vm.provider,
                    "address": c.vm.address,
                    "ssh_port": c.vm.ssh_port,
                    "user": c.vm.user,
                    "host_key": c.vm.host_key,
                    "ssh_command": access.display_command(),
                    "timings_ms": c.timings,
                    "since_start_ms": milestones.0.get(c.vm.name.as_str()),
                    "warnings": c.warnings,
                    "request_id": c.request_id,
                })
            })
            .collect();
        let failed: Vec<_> = failures
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "error": f.error, "cleaned_up": f.cleaned_up, "removed": f.removed, "vm_left_running": f.vm_left_running}))
            .collect();
        println!("{}", serde_json::json!({ "vms": vms, "failed": failed }));
        return Ok(());
    }
    for c in completes {
        let access = connect::access_for(app, &c.vm);
        let timings: Vec<String> = c
            .timings
            .iter()
            .map(|(k, v)| format!("{k} {:.1}s", *v as f64 / 1000.0))
            .collect();
        println!("VM {} is ready", c.vm.name);
        println!("  provider  {}", c.vm.provider);
        println!("  address   {}:{}", c.vm.address, c.vm.ssh_port);
        println!("  user      {}", c.vm.user);
        println!("  ssh       {}", access.display_command());
        println!("  connect   azlin connect {}", c.vm.name);
        println!("  timings   {}", timings.join(", "));
        for warning in &c.warnings {
            println!("  warning   {warning}");
        }
    }
    Ok(())
}

/// The first line of a failure message: the stage line shows it, and [`failure_exit`] prints
/// the whole message (with what the VM says about itself) once at the end.
fn headline(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

/// Reports failures with what was cleaned up or left running; the exit code of the first.
fn failure_exit(progress: &Progress, failures: &[CreateFailed]) -> Option<ExitCode> {
    for f in failures {
        progress.note(&format!("✗ {}: {}", f.name, f.error.message));
        if f.vm_left_running {
            progress.note(&format!(
                "  the VM '{}' is still running; inspect it with `azlin connect {}` or remove it with `azlin delete {} --yes`",
                f.name, f.name, f.name
            ));
        } else if f.cleaned_up {
            if f.removed.is_empty() {
                progress.note("  nothing had been created; nothing is left behind");
            } else {
                progress.note(&format!("  cleaned up: removed {}", f.removed.join(", ")));
                progress.note("  nothing is left behind (check with `azlin list`)");
            }
        } else {
            progress.note(&format!(
                "  cleanup may be needed: `azlin delete {} --yes`",
                f.name
            ));
        }
    }
    failures.first().map(|f| f.error.kind.exit_code())
}
