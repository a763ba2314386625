//! The job graph: `needs` targets must exist and must not form a cycle.

/// A problem with the job graph, and the job whose `needs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphProblem {
    /// The job whose `needs` is wrong.
    pub job: String,
    /// What is wrong.
    pub message: String,
}

/// Checks the graph given as `(job, needs)` pairs in file order.
pub fn check(jobs: &[(String, Vec<String>)]) -> Result<(), GraphProblem> {
    for (job, needs) in jobs {
        for need in needs {
            if !jobs.iter().any(|(id, _)| id == need) {
                return Err(GraphProblem {
                    job: job.clone(),
                    message: format!(
                        "job '{job}' needs job '{need}', which is not defined in this workflow"
                    ),
                });
            }
        }
    }
    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let index = |id: &str| jobs.iter().position(|(j, _)| j == id);
    let mut colour = vec![Colour::White; jobs.len()];
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        at: usize,
        jobs: &[(String, Vec<String>)],
        index: &dyn Fn(&str) -> Option<usize>,
        colour: &mut [Colour],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        colour[at] = Colour::Grey;
        path.push(at);
        for need in &jobs[at].1 {
            let Some(n) = index(need) else { continue };
            match colour[n] {
                Colour::Grey => {
                    let start = path.iter().position(|&p| p == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n);
                    return Some(cycle);
                }
                Colour::White => {
                    if let Some(c) = visit(n, jobs, index, colour, path) {
                        return Some(c);
                    }
                }
                Colour::Black => {}
            }
        }
        path.pop();
        colour[at] = Colour::Black;
        None
    }
    for start in 0..jobs.len() {
        if colour[start] == Colour::White
            && let Some(cycle) = visit(start, jobs, &index, &mut colour, &mut path)
        {
            let names: Vec<String> = cycle.iter().map(|&i| format!("'{}'", jobs[i].0)).collect();
            return Err(GraphProblem {
                job: jobs[cycle[0]].0.clone(),
                message: format!(
                    "jobs depend on each other in a cycle: {}",
                    names.join(" needs ")
                ),
            });
        }
    }
    Ok(())
}

/// Every job that `job` needs, directly or through other jobs.
pub fn ancestors<'a>(jobs: &'a [(String, Vec<String>)], job: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    let mut stack: Vec<&str> = vec![job];
    while let Some(current) = stack.pop() {
        if let Some((_, needs)) = jobs.iter().find(|(id, _)| id == current) {
            for need in needs {
                if !out.contains(&need.as_str()) {
                    out.push(need);
                    stack.push(need);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(j, n)| (j.to_string(), n.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn accepts_a_dag() {
        assert!(check(&g(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])])).is_ok());
    }

    #[test]
    fn refuses_unknown_targets() {
        let err = check(&g(&[("a", &[]), ("b", &["x"])])).unwrap_err();
        assert_eq!(err.job, "b");
        assert!(err.message.contains("'x'"), "{}", err.message);
    }

    #[test]
    fn refuses_cycles_and_names_them() {
        let err = check(&g(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])])).unwrap_err();
        assert_eq!(
            err.message,
            "jobs depend on each other in a cycle: 'a' needs 'c' needs 'b' needs 'a'"
        );
        let err = check(&g(&[("a", &["a"])])).unwrap_err();
        assert!(err.message.contains("'a' needs 'a'"));
    }

    #[test]
    fn ancestors_are_transitive() {
        let jobs = g(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let mut got = ancestors(&jobs, "c");
        got.sort();
        assert_eq!(got, ["a", "b"]);
    }
}
