//! Paths a workflow names inside the job's workspace (checkout `path:`, local actions): they are
//! resolved lexically and must stay under the workspace, as GitHub requires. Nothing here
//! touches a file system, so a path cannot escape through a folder an earlier step made.

/// `path` (relative to `workspace`, or absolute) as an absolute path under `workspace`, or why
/// it leaves it. An empty path is the workspace itself.
pub(crate) fn confine(workspace: &str, path: &str) -> Result<String, String> {
    let workspace = workspace.trim_end_matches('/');
    let relative = if let Some(rest) = path.strip_prefix(workspace) {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(outside(path, workspace));
        }
        rest
    } else if path.starts_with('/') {
        return Err(outside(path, workspace));
    } else {
        path
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(outside(path, workspace));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        Ok(workspace.to_string())
    } else {
        Ok(format!("{workspace}/{}", parts.join("/")))
    }
}

fn outside(path: &str, workspace: &str) -> String {
    format!("the path '{path}' is not under the job's workspace '{workspace}'")
}

#[cfg(test)]
mod tests {
    use super::confine;

    #[test]
    fn paths_stay_in_the_workspace() {
        let ws = "/home/u/work/r/r";
        assert_eq!(confine(ws, "").unwrap(), ws);
        assert_eq!(confine(ws, ".").unwrap(), ws);
        assert_eq!(confine(ws, "./a/b/").unwrap(), "/home/u/work/r/r/a/b");
        assert_eq!(confine(ws, "a/../b").unwrap(), "/home/u/work/r/r/b");
        assert_eq!(
            confine(ws, "/home/u/work/r/r/x").unwrap(),
            "/home/u/work/r/r/x"
        );
        for bad in [
            "..",
            "./../x",
            "a/../../x",
            "/etc",
            "/",
            "/home/u/work/r/rx",
            "../r/x",
        ] {
            let e = confine(ws, bad).unwrap_err();
            assert!(e.contains("not under the job's workspace"), "{bad}: {e}");
        }
    }
}
