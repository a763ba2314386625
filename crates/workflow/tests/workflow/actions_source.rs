//! Remote actions fetched on the host (`action::source`), against the conformance bundles as a
//! `file://` source and through the HTTPS test server with its own CA.

use azlin_testkit::{ActionRepos, GitServer};
use azlin_workflow::ActionSettings;
use azlin_workflow::action::source::{ActionError, ActionSource, RemoteRef};
use std::path::Path;

fn settings(repos: &ActionRepos, cache: &Path) -> ActionSettings {
    let mut settings = ActionSettings::new(cache);
    settings.url = repos.file_url();
    settings
}

fn remote(reference: &str) -> RemoteRef {
    RemoteRef::parse(reference).unwrap()
}

#[tokio::test]
async fn resolves_a_branch_a_tag_and_a_full_sha() {
    let repos = ActionRepos::new();
    let cache = tempfile::tempdir().unwrap();
    let source = ActionSource::new(&settings(&repos, cache.path())).unwrap();

    let branch = source
        .fetch(&remote("nektos/act-test-actions@main"))
        .await
        .unwrap();
    assert_eq!(
        branch.commit,
        repos.rev_parse("nektos/act-test-actions", "main")
    );
    assert_eq!(
        branch.root,
        cache
            .path()
            .join("actions/nektos/act-test-actions")
            .join(&branch.commit)
    );
    assert_eq!(branch.dir, branch.root);
    assert!(branch.root.join(".github/workflows").is_dir());
    assert!(branch.root.join("js").is_dir());

    let tag = source
        .fetch(&remote("actions/hello-world-javascript-action@v1"))
        .await
        .unwrap();
    assert_eq!(
        tag.commit,
        repos.rev_parse("actions/hello-world-javascript-action", "v1")
    );
    assert!(tag.dir.join("action.yml").is_file());

    let sub = source
        .fetch(&remote(
            "cloudposse/actions/github/slash-command-dispatch@0.14.0",
        ))
        .await
        .unwrap();
    assert_eq!(
        sub.dir,
        sub.root.join("github").join("slash-command-dispatch")
    );
    assert!(sub.dir.join("action.yml").is_file());

    let sha = repos.rev_parse("actions/hello-world-javascript-action", "main");
    let pinned = source
        .fetch(&remote(&format!(
            "actions/hello-world-javascript-action@{sha}"
        )))
        .await
        .unwrap();
    assert_eq!(pinned.commit, sha);
    assert!(pinned.dir.join("action.yml").is_file());
    assert_eq!(source.fetches(), 4);

    // Cached: the same tree, nothing fetched again, not even by a new source on the same cache.
    source
        .fetch(&remote("nektos/act-test-actions@main"))
        .await
        .unwrap();
    assert_eq!(source.fetches(), 4);
    let again = ActionSource::new(&settings(&repos, cache.path())).unwrap();
    for (reference, first) in [
        ("nektos/act-test-actions@main", &branch),
        ("actions/hello-world-javascript-action@v1", &tag),
        (
            "cloudposse/actions/github/slash-command-dispatch@0.14.0",
            &sub,
        ),
    ] {
        assert_eq!(&again.fetch(&remote(reference)).await.unwrap(), first);
    }
    assert_eq!(again.fetches(), 0);
    // No staging or scratch folders are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("actions/nektos/act-test-actions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn refuses_short_shas_and_unknown_refs() {
    let repos = ActionRepos::new();
    let cache = tempfile::tempdir().unwrap();
    let source = ActionSource::new(&settings(&repos, cache.path())).unwrap();
    let sha = repos.rev_parse("nektos/act-test-actions", "main");

    let err = source
        .fetch(&remote(&format!("nektos/act-test-actions@{}", &sha[..7])))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::ShortSha { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "the ref '{}' is a shortened commit SHA, which GitHub does not support: use the full 40-character SHA",
            &sha[..7]
        )),
        "{err}"
    );

    let err = source
        .fetch(&remote("nektos/act-test-actions@no-such-branch"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::UnknownRef { .. }), "{err:?}");

    let err = source
        .fetch(&remote(&format!(
            "nektos/act-test-actions@{}",
            "1".repeat(40)
        )))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::UnknownRef { .. }), "{err:?}");

    let err = source
        .fetch(&remote("nektos/no-such-repository@main"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::Fetch { .. }), "{err:?}");
}

#[tokio::test]
async fn offline_uses_the_cache_only() {
    let repos = ActionRepos::new();
    let cache = tempfile::tempdir().unwrap();
    let mut offline = settings(&repos, cache.path());
    offline.offline = true;
    // An unreachable URL shows that offline never asks it.
    offline.url = "https://unreachable.invalid".to_string();

    let source = ActionSource::new(&offline).unwrap();
    let err = source
        .fetch(&remote("actions/hello-world-javascript-action@v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::NotCached { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("actions/hello-world-javascript-action@v1")
            && text.contains("--actions-offline"),
        "{text}"
    );

    let online = ActionSource::new(&settings(&repos, cache.path())).unwrap();
    let fetched = online
        .fetch(&remote("actions/hello-world-javascript-action@v1"))
        .await
        .unwrap();

    let source = ActionSource::new(&offline).unwrap();
    assert_eq!(
        source
            .fetch(&remote("actions/hello-world-javascript-action@v1"))
            .await
            .unwrap(),
        fetched
    );
    assert_eq!(
        source
            .fetch(&remote(&format!(
                "actions/hello-world-javascript-action@{}",
                fetched.commit
            )))
            .await
            .unwrap(),
        fetched
    );
    assert_eq!(source.fetches(), 0);
    let err = source
        .fetch(&remote("actions/hello-world-javascript-action@main"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::NotCached { .. }), "{err:?}");
}

#[tokio::test]
async fn an_override_folder_is_used_without_git() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("sub")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut settings = ActionSettings::new(cache.path());
    // Nothing answers here: an override must not reach the URL.
    settings.url = "https://unreachable.invalid".to_string();
    settings.overrides = vec![(
        "Nektos/Act-Test-Actions@main".to_string(),
        folder.path().to_path_buf(),
    )];
    let source = ActionSource::new(&settings).unwrap();
    let fetched = source
        .fetch(&remote("nektos/act-test-actions/sub@main"))
        .await
        .unwrap();
    assert_eq!(fetched.root, folder.path());
    assert_eq!(fetched.dir, folder.path().join("sub"));
    assert_eq!(fetched.commit, "override");
    assert_eq!(source.fetches(), 0);

    for (key, dir) in [
        ("nektos/act-test-actions", folder.path().to_path_buf()),
        (
            "nektos/act-test-actions/sub@main",
            folder.path().to_path_buf(),
        ),
        (
            "nektos/act-test-actions@main",
            folder.path().join("missing"),
        ),
    ] {
        let mut settings = ActionSettings::new(cache.path());
        settings.overrides = vec![(key.to_string(), dir)];
        let err = ActionSource::new(&settings).unwrap_err();
        assert!(
            matches!(err, ActionError::Override { .. }),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn hostile_refs_are_refused_before_git_runs() {
    for reference in [
        "nektos/act-test-actions@main;rm -rf /",
        "nektos/act-test-actions@$(x)",
        "nektos/act-test-actions@-upload-pack=x",
    ] {
        let err = RemoteRef::parse(reference).unwrap_err();
        assert!(matches!(err, ActionError::InvalidRef { .. }), "{err:?}");
    }
}

#[test]
fn urls_with_credentials_or_plain_http_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let mut settings = ActionSettings::new(cache.path());
    settings.url = "https://someone:p4ssw0rd@github.com".to_string();
    let err = ActionSource::new(&settings).unwrap_err();
    assert!(matches!(err, ActionError::InvalidUrl { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("p4ssw0rd"), "{shown}");

    settings.url = "http://github.com".to_string();
    let err = ActionSource::new(&settings).unwrap_err();
    assert!(matches!(err, ActionError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn fetches_through_https_with_the_test_ca() {
    let repos = ActionRepos::new();
    let server = GitServer::serve(repos.root(), "127.0.0.1".parse().unwrap(), "localhost");
    let cache = tempfile::tempdir().unwrap();
    let mut settings = ActionSettings::new(cache.path());
    settings.url = server.url.clone();

    // Without the CA the server is not trusted.
    let source = ActionSource::new(&settings).unwrap();
    let err = source
        .fetch(&remote("actions/hello-world-javascript-action@v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::Fetch { .. }), "{err:?}");

    settings.ca_cert = Some(server.ca_path.clone());
    let source = ActionSource::new(&settings).unwrap();
    let fetched = source
        .fetch(&remote("actions/hello-world-javascript-action@v1"))
        .await
        .unwrap();
    assert_eq!(
        fetched.commit,
        repos.rev_parse("actions/hello-world-javascript-action", "v1")
    );
    assert!(fetched.dir.join("action.yml").is_file());
    assert_eq!(source.fetches(), 1);
}

#[tokio::test]
async fn a_ref_resolves_once_per_source_and_concurrent_fetches_share_one() {
    let repos = ActionRepos::new();
    let cache = tempfile::tempdir().unwrap();
    let source = ActionSource::new(&settings(&repos, cache.path())).unwrap();
    let action = remote("nektos/act-test-actions@main");
    let (a, b) = tokio::join!(source.fetch(&action), source.fetch(&action));
    let first = a.unwrap();
    assert_eq!(first, b.unwrap());
    assert_eq!(source.fetches(), 1);

    // The branch moves: this source keeps the commit it resolved; a new one sees the move.
    let previous = repos.rev_parse("nektos/act-test-actions", "main~1");
    let moved = std::process::Command::new("git")
        .current_dir(repos.repository("nektos/act-test-actions"))
        .args(["update-ref", "refs/heads/main", &previous])
        .status()
        .unwrap();
    assert!(moved.success());
    assert_eq!(source.fetch(&action).await.unwrap(), first);
    let next = ActionSource::new(&settings(&repos, cache.path())).unwrap();
    assert_eq!(next.fetch(&action).await.unwrap().commit, previous);
    assert_eq!(next.fetches(), 1);
}
