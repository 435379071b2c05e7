//! The page, embedded in the binary at compile time.

/// One file the server serves.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Its path.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/game.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/game.css"),
    },
    Asset {
        path: "/app.js",
        content_type: JS,
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/sim.js",
        content_type: JS,
        body: include_bytes!("../web/sim.js"),
    },
    Asset {
        path: "/protocol.js",
        content_type: JS,
        body: include_bytes!("../web/protocol.js"),
    },
    Asset {
        path: "/netcode.js",
        content_type: JS,
        body: include_bytes!("../web/netcode.js"),
    },
    Asset {
        path: "/render.js",
        content_type: JS,
        body: include_bytes!("../web/render.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/favicon.svg"),
    },
];

/// The file at `path` (`/index.html` is `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_module_the_page_imports_is_served() {
        for asset in super::ASSETS {
            if !asset.path.ends_with(".js") {
                continue;
            }
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.split('"').nth(1).expect("an import path in quotes");
                let path = from.trim_start_matches('.');
                assert!(super::find(path).is_some(), "{} imports {from}", asset.path);
            }
        }
        assert!(super::find("/index.html").is_some());
        assert!(super::find("/nope").is_none());
    }
}
