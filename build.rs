//! Fetches GraphiQL's browser assets (production builds of GraphiQL and React, at pinned
//! versions, checked against pinned sha512 digests) from the npm registry at build time
//! and embeds them gzip-compressed, so `/graphql` serves a GraphiQL that needs no network
//! and no CDN (src/http/graphiql.rs). Nothing of them is committed.
//!
//! The tarballs come from `npm pack` (so npm's own cache and registry settings apply: a
//! machine that built once builds offline), or from the directory
//! `RAPPORT_GRAPHIQL_TARBALLS` names (for builders without npm). When neither works the
//! build goes on with a warning, and `/graphql` serves a page that says what is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use sha2::Digest;

/// An npm package: name, version, `dist.integrity` as the registry gives it, and the
/// files taken from its tarball (path inside, name served under `/graphiql/`).
struct Package {
    name: &'static str,
    version: &'static str,
    integrity: &'static str,
    files: &'static [(&'static str, &'static str)],
}

const PACKAGES: &[Package] = &[
    Package {
        name: "graphiql",
        version: "4.1.2",
        integrity: "sha512-rNlzQIAzm6i2KBXmVQWBgLvt0TloxFVB2d18bukvdsvjEuFDHsKx5IVOomL1W1o5WW+tE54+ioHb2AEKzO2cUg==",
        files: &[
            ("package/graphiql.min.js", "graphiql-4.1.2.min.js"),
            ("package/graphiql.min.css", "graphiql-4.1.2.min.css"),
        ],
    },
    Package {
        name: "react",
        version: "18.3.1",
        integrity: "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        files: &[(
            "package/umd/react.production.min.js",
            "react-18.3.1.production.min.js",
        )],
    },
    Package {
        name: "react-dom",
        version: "18.3.1",
        integrity: "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        files: &[(
            "package/umd/react-dom.production.min.js",
            "react-dom-18.3.1.production.min.js",
        )],
    },
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RAPPORT_GRAPHIQL_TARBALLS");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let generated = match assets(&out.join("graphiql")) {
        Ok(assets) => {
            let mut code = String::from("pub const MISSING: Option<&str> = None;\n");
            code.push_str("pub const ASSETS: &[Asset] = &[\n");
            for (name, path) in assets {
                code.push_str(&format!(
                    "    Asset {{ name: {name:?}, gzip: include_bytes!({path:?}) }},\n",
                    path = path.display()
                ));
            }
            code.push_str("];\n");
            code
        }
        Err(why) => {
            println!("cargo:warning=GraphiQL's assets are not embedded ({why}); /graphql will say so instead of showing GraphiQL");
            // A path that never exists: the next build tries again (npm back, say).
            println!(
                "cargo:rerun-if-changed={}",
                out.join("graphiql").join("fetch-again").display()
            );
            format!("pub const MISSING: Option<&str> = Some({why:?});\npub const ASSETS: &[Asset] = &[];\n")
        }
    };
    std::fs::write(out.join("graphiql_assets.rs"), generated).expect("OUT_DIR is writable");
}

/// Every served file, gzip-compressed under `dir`: (served name, path of the `.gz`).
fn assets(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut assets = Vec::new();
    for package in PACKAGES {
        let tarball = tarball(package, dir)?;
        let unpacked = dir.join(format!("{}-{}", package.name, package.version));
        std::fs::create_dir_all(&unpacked).map_err(|err| err.to_string())?;
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .args(package.files.iter().map(|(inside, _)| inside))
            .status()
            .map_err(|err| format!("tar could not run: {err}"))?;
        if !status.success() {
            return Err(format!("tar could not unpack {}", tarball.display()));
        }
        for (inside, served) in package.files {
            let bytes = std::fs::read(unpacked.join(inside)).map_err(|err| err.to_string())?;
            let gz = dir.join(format!("{served}.gz"));
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&bytes).map_err(|err| err.to_string())?;
            let compressed = encoder.finish().map_err(|err| err.to_string())?;
            std::fs::write(&gz, compressed).map_err(|err| err.to_string())?;
            assets.push((*served, gz));
        }
    }
    Ok(assets)
}

/// The package's tarball, fetched (or found) and checked against its pinned digest.
fn tarball(package: &Package, dir: &Path) -> Result<PathBuf, String> {
    let file = format!("{}-{}.tgz", package.name, package.version);
    let path = match std::env::var_os("RAPPORT_GRAPHIQL_TARBALLS") {
        Some(from) => PathBuf::from(from).join(&file),
        None => {
            let path = dir.join(&file);
            if !path.exists() {
                let spec = format!("{}@{}", package.name, package.version);
                let output = Command::new("npm")
                    .args(["pack", &spec, "--silent", "--pack-destination"])
                    .arg(dir)
                    .output()
                    .map_err(|err| format!("npm could not run to fetch {spec}: {err}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "`npm pack {spec}` failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
            }
            path
        }
    };
    let bytes = std::fs::read(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes));
    let found = format!("sha512-{digest}");
    if found != package.integrity {
        // Not a fallback case: a tarball that is not the pinned one must never be embedded.
        panic!(
            "{} is not {}@{} as pinned (digest {found}, expected {})",
            path.display(),
            package.name,
            package.version,
            package.integrity
        );
    }
    Ok(path)
}
