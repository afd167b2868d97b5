//! How an error is said: once, as one line, its causes after it. A leaf every stage uses
//! for the one place each error is logged.

/// An error and its sources, joined with `: `, for the one place each error is logged. A cause
/// whose text the error before it already ends with is left out, and so is a part repeated
/// right after itself (drivers often print their cause and return it as the source too).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut texts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !texts.last().is_some_and(|last| last.ends_with(&text)) {
            texts.push(text);
        }
        source = cause.source();
    }
    let joined = texts.join(": ");
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 12, item 3): `check` printed the MySQL cause three times.
    #[test]
    fn an_error_chain_says_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let io = E("Connection refused (os error 111)", None);
        let driver = E(
            "Input/output error: Input/output error: Connection refused (os error 111)",
            Some(Box::new(E(
                "Input/output error: Connection refused (os error 111)",
                Some(Box::new(io)),
            ))),
        );
        let top = E(
            "cannot connect to MySQL at 127.0.0.1:3306",
            Some(Box::new(driver)),
        );
        assert_eq!(
            error_chain(&top),
            "cannot connect to MySQL at 127.0.0.1:3306: Input/output error: Connection refused (os error 111)"
        );
    }
}
