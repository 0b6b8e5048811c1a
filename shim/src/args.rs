//! The command line containerd gives a shim, Go flag style:
//! `-namespace NS -address ADDR -publish-binary BIN -id ID [-bundle B] [-debug] start|delete`.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub namespace: String,
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    pub action: String,
}

impl Args {
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                if !a.action.is_empty() {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                a.action = arg;
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            match name {
                "debug" => a.debug = inline.as_deref() != Some("false"),
                "v" | "version" => a.version = true,
                "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket" => {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| format!("flag -{name} needs a value"))?,
                    };
                    match name {
                        "namespace" => a.namespace = v,
                        "address" => a.address = v,
                        "publish-binary" => a.publish_binary = v,
                        "id" => a.id = v,
                        "bundle" => a.bundle = v,
                        _ => a.socket = v,
                    }
                }
                other => return Err(format!("unknown flag -{other}")),
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_command_lines() {
        let a = parse("-namespace default -address /run/c.sock -publish-binary /usr/bin/containerd -id c1 -debug start")
            .expect("parse");
        assert_eq!(a.namespace, "default");
        assert_eq!(a.address, "/run/c.sock");
        assert_eq!(a.id, "c1");
        assert!(a.debug);
        assert_eq!(a.action, "start");
        let a = parse("--namespace=k8s.io -id x -bundle /b delete").expect("parse");
        assert_eq!(
            (a.namespace.as_str(), a.bundle.as_str(), a.action.as_str()),
            ("k8s.io", "/b", "delete")
        );
        assert!(parse("-id").is_err());
        assert!(parse("-colour red").is_err());
        assert!(parse("start delete").is_err());
    }
}
