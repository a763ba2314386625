//! Workflow commands written to a step's output: `::name key=value,…::data`.

/// A parsed workflow command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowCommand {
    /// The command name (`set-output`, `add-mask`, `error`, …).
    pub name: String,
    /// `key=value` properties, unescaped.
    pub properties: Vec<(String, String)>,
    /// The data after the second `::`, unescaped.
    pub data: String,
}

impl WorkflowCommand {
    /// The property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn unescape_property(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// Parses `line` as a workflow command (`None` when it is ordinary output).
pub fn parse(line: &str) -> Option<WorkflowCommand> {
    let rest = line.trim().strip_prefix("::")?;
    let end = rest.find("::")?;
    let (section, data) = (&rest[..end], &rest[end + 2..]);
    let (name, props) = match section.find(' ') {
        Some(i) => (&section[..i], section[i + 1..].trim()),
        None => (section, ""),
    };
    if name.is_empty() {
        return None;
    }
    let mut properties = Vec::new();
    for pair in props.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        properties.push((k.trim().to_string(), unescape_property(v)));
    }
    Some(WorkflowCommand {
        name: name.to_string(),
        properties,
        data: unescape_data(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_with_properties_and_escapes() {
        let c = parse("::set-output name=zoo::zar").unwrap();
        assert_eq!(c.name, "set-output");
        assert_eq!(c.property("name"), Some("zoo"));
        assert_eq!(c.data, "zar");

        let c = parse("::error file=app.js,line=100,col=30::Hello error!").unwrap();
        assert_eq!(c.name, "error");
        assert_eq!(c.property("line"), Some("100"));
        assert_eq!(c.property("col"), Some("30"));
        assert_eq!(c.data, "Hello error!");

        let c = parse("::set-output name=a%3Ab::x%0Ay%25").unwrap();
        assert_eq!(c.property("name"), Some("a:b"));
        assert_eq!(c.data, "x\ny%");

        let c = parse("::endgroup::").unwrap();
        assert_eq!((c.name.as_str(), c.data.as_str()), ("endgroup", ""));
        let c = parse("  ::add-mask::s3cret  ").unwrap();
        assert_eq!(c.data, "s3cret");
    }

    #[test]
    fn ordinary_output_is_not_a_command() {
        for line in [
            "hello",
            ":: nothing",
            "::",
            "::::x",
            "echo ::set-output name=a::b",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }
}
