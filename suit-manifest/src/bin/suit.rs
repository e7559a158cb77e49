//! `suit`: make signing keys, create signed SUIT envelopes for firmware images, verify and show them.
//! Exit 0 on success; otherwise a one-line reason on stderr and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use suit_manifest::builder::{self, ComponentSpec, DeltaSpec, ManifestSpec, Signing};
use suit_manifest::{Algorithm, Envelope, SeverableStatus, TrustAnchor, keyfile, keys};

#[derive(Parser)]
#[command(
    name = "suit",
    version,
    about = "Create, sign, verify and inspect SUIT firmware manifests (draft-ietf-suit-manifest-34)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a P-256 signing key: writes KEY (PKCS#8 PEM) and KEY's .pub.pem twin (SPKI PEM).
    Keygen {
        /// Private key file to write, e.g. key.pem (the public key goes to key.pub.pem).
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a signed envelope for a firmware image.
    Create {
        /// The firmware image.
        #[arg(long)]
        image: PathBuf,
        /// Vendor: a UUID, or a name (e.g. a domain) turned into UUIDv5 under the DNS namespace.
        #[arg(long)]
        vendor_id: String,
        /// Device class: a UUID, or a name turned into UUIDv5 under the vendor id.
        #[arg(long)]
        class_id: String,
        /// Sequence number: devices refuse any manifest whose number is not higher than theirs.
        #[arg(long)]
        sequence: u64,
        /// Where devices fetch the image: absolute (coap://host/fw/<id>/image) or relative to the
        /// manifest's own URI (e.g. `image`). Not used with --integrated.
        #[arg(long, required_unless_present = "integrated")]
        uri: Option<String>,
        /// Version string, stored in the text section (component-version).
        #[arg(long)]
        version: Option<String>,
        /// Private key (PKCS#8 PEM) from `suit keygen`.
        #[arg(long)]
        key: PathBuf,
        /// COSE algorithm id: es256 (-7, the draft's examples) or esp256 (-9, the SUIT MTI profile).
        #[arg(long, value_enum, default_value_t = Alg::Es256)]
        alg: Alg,
        /// Put the image inside the envelope (key "#image") for push delivery to /5/0/0.
        #[arg(long, conflicts_with = "delta_from")]
        integrated: bool,
        /// Make a delta release: the payload at --uri is a detools sequential patch that turns
        /// this image (the device's active one, the precursor) into --image.
        #[arg(long, requires = "patch_out")]
        delta_from: Option<PathBuf>,
        /// Use this patch (e.g. from `detools create_patch --patch-type sequential --compression
        /// heatshrink OLD NEW P`) instead of making one; it is checked to turn OLD into NEW.
        #[arg(long, requires = "delta_from")]
        patch: Option<PathBuf>,
        /// Where to write the patch the devices fetch (host it with the manifest).
        #[arg(long, requires = "delta_from")]
        patch_out: Option<PathBuf>,
        /// Compression of the patch made with --delta-from (without --patch).
        #[arg(long, value_enum, default_value_t = PatchCompression::Heatshrink)]
        compression: PatchCompression,
        /// Output envelope file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Verify an envelope's signature and digests (and an image against it).
    Verify {
        /// Public key (SPKI PEM, or the hex of a SEC1 point).
        #[arg(long)]
        key: PathBuf,
        /// The envelope.
        envelope: PathBuf,
        /// Also check that this image has the manifest's digest and size.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what an envelope holds (without checking the signature unless --key is given).
    Show {
        envelope: PathBuf,
        /// Public key to check the signature with.
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PatchCompression {
    /// heatshrink, window 2^8, lookahead 2^7 (detools' default parameters)
    Heatshrink,
    /// uncompressed (for debugging: about the size of the image)
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    Es256,
    Esp256,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suit: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { output, force } => keygen(&output, force),
        Command::Create {
            image,
            vendor_id,
            class_id,
            sequence,
            uri,
            version,
            key,
            alg,
            integrated,
            delta_from,
            patch,
            patch_out,
            compression,
            output,
        } => {
            let image_bytes = read(&image)?;
            let key = keyfile::signing_key_from_pem(&read_text(&key)?)
                .with_context(|| format!("{}", key.display()))?;
            let vendor = builder::uuid_for(&vendor_id, None);
            let class = builder::uuid_for(&class_id, Some(&vendor));
            let mut comp = ComponentSpec::for_image(&image_bytes, vendor, class);
            comp.uri = Some(if integrated {
                "#image".to_string()
            } else {
                uri.unwrap_or_default()
            });
            comp.version = version;
            let alg = match alg {
                Alg::Es256 => Algorithm::Es256,
                Alg::Esp256 => Algorithm::Esp256,
            };
            let mut spec = ManifestSpec::new(sequence, comp);
            let mut delta_note = String::new();
            if let (Some(old), Some(out)) = (&delta_from, &patch_out) {
                let old_bytes = read(old)?;
                let patch_bytes = delta(&old_bytes, &image_bytes, patch.as_deref(), compression)?;
                write(out, &patch_bytes)?;
                spec.delta = Some(DeltaSpec::detools_from(&old_bytes));
                delta_note = format!(
                    "; {} ({} bytes, {:.1} % of the image)",
                    out.display(),
                    patch_bytes.len(),
                    100.0 * patch_bytes.len() as f64 / image_bytes.len().max(1) as f64
                );
            }
            let manifest = builder::manifest(&spec)?;
            let payloads: Vec<(&str, &[u8])> = if integrated {
                vec![("#image", &image_bytes)]
            } else {
                vec![]
            };
            let env = builder::envelope(&manifest, Signing::Sign(&key, alg), &payloads)?;
            write(&output, &env)?;
            println!(
                "wrote {} ({} bytes, sequence {sequence}){delta_note}",
                output.display(),
                env.len()
            );
            Ok(())
        }
        Command::Verify {
            key,
            envelope,
            image,
            json,
        } => {
            let anchor = load_anchor(&key)?;
            let bytes = read(&envelope)?;
            let m = suit_manifest::verify(&bytes, &[anchor])
                .map_err(|e| anyhow!("{}: {e}", envelope.display()))?;
            m.check_severed_elements()
                .map_err(|e| anyhow!("{}: {e}", envelope.display()))?;
            let info =
                suit_manifest::describe(&m).map_err(|e| anyhow!("{}: {e}", envelope.display()))?;
            if let Some(image) = &image {
                let img = read(image)?;
                let c = info[0].ok_or_else(|| anyhow!("the manifest has no component"))?;
                let digest = c
                    .image_digest
                    .ok_or_else(|| anyhow!("the manifest has no image digest"))?;
                if let Some(size) = c.image_size {
                    if size != img.len() as u64 {
                        bail!(
                            "{}: size {} differs from the manifest's image size {size}",
                            image.display(),
                            img.len()
                        );
                    }
                }
                if !digest.matches(&img) {
                    bail!(
                        "{}: SHA-256 differs from the manifest's image digest",
                        image.display()
                    );
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"valid": true, "sequence_number": m.sequence_number(), "image_checked": image.is_some()})
                );
            } else {
                println!(
                    "OK: signature and manifest digest verify, sequence {}{}",
                    m.sequence_number(),
                    if image.is_some() {
                        ", image matches"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Command::Show {
            envelope,
            key,
            json,
        } => show(&envelope, key.as_deref(), json),
    }
}

/// The patch of a delta release: `given` (checked) or one made here, that turns `old` into `new`.
fn delta(
    old: &[u8],
    new: &[u8],
    given: Option<&Path>,
    compression: PatchCompression,
) -> Result<Vec<u8>> {
    let patch = match given {
        Some(path) => read(path)?,
        None => delta_patch::create_patch(
            old,
            new,
            match compression {
                PatchCompression::Heatshrink => delta_patch::Compression::HEATSHRINK,
                PatchCompression::None => delta_patch::Compression::None,
            },
        ),
    };
    let too_big = || anyhow!("the images are larger than 4 GiB");
    let mut applier = delta_patch::Applier::new(
        u32::try_from(old.len()).map_err(|_| too_big())?,
        u32::try_from(new.len()).map_err(|_| too_big())?,
    );
    let mut rebuilt = Vec::with_capacity(new.len());
    let applied = applier
        .feed(&patch, &mut { old }, &mut rebuilt)
        .map_err(|e| anyhow!("{e}"))
        .and_then(|()| applier.finish().map_err(|e| anyhow!("{e}")));
    let what = given.map_or("the patch made".into(), |p| p.display().to_string());
    match applied {
        Ok(_) if rebuilt == new => Ok(patch),
        Ok(_) => bail!("{what} does not turn --delta-from into --image (wrong pair of images?)"),
        Err(e) => bail!(
            "{what} cannot be applied by devices: {e} (make it with detools create_patch --patch-type sequential --compression heatshrink OLD NEW PATCH)"
        ),
    }
}

fn keygen(output: &Path, force: bool) -> Result<()> {
    let public = public_path(output);
    for p in [output, public.as_path()] {
        if p.exists() && !force {
            bail!("{} exists; pass --force to overwrite it", p.display());
        }
    }
    let key = keyfile::generate()?;
    let pem = keyfile::signing_key_to_pem(&key)?;
    write(output, pem.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(output, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", output.display()))?;
    }
    write(
        &public,
        keyfile::verifying_key_to_pem(key.verifying_key())?.as_bytes(),
    )?;
    println!(
        "wrote {} (private, keep it offline) and {} (public, give it to servers and devices)",
        output.display(),
        public.display()
    );
    Ok(())
}

/// `key.pem` → `key.pub.pem`; `key` → `key.pub.pem`.
fn public_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

fn show(path: &Path, key: Option<&Path>, json: bool) -> Result<()> {
    let bytes = read(path)?;
    let env = Envelope::decode(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // Show decodes the manifest even without a key, but says plainly whether it was authenticated.
    let (m, authenticated) = match key {
        Some(k) => (
            env.authenticate(&[load_anchor(k)?])
                .map_err(|e| anyhow!("{}: {e}", path.display()))?,
            true,
        ),
        None => (
            suit_manifest::manifest::Manifest::decode_unauthenticated(&env)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?,
            false,
        ),
    };
    let info = suit_manifest::describe(&m).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let uuid = |b: &[u8]| match uuid::Uuid::from_slice(b) {
        Ok(u) => u.to_string(),
        Err(_) => hex(b),
    };
    let components: Vec<_> = info
        .iter()
        .flatten()
        .map(|c| {
            json!({
                "id": c.id.parts().map(hex).collect::<Vec<_>>(),
                "vendor_id": c.vendor_id.map(uuid),
                "class_id": c.class_id.map(uuid),
                "image_digest": c.image_digest.map(|d| hex(&d.0)),
                "image_size": c.image_size,
                "uri": c.uri,
                "version": c.version,
                "payload_format": c.payload_format.map(|f| f.as_str()),
            })
        })
        .collect();
    let status = |k| match m.severable_status(k) {
        SeverableStatus::Absent => "absent",
        SeverableStatus::Inline => "inline",
        SeverableStatus::SeveredPresent => "severed, present and matching",
        SeverableStatus::SeveredAbsent => "severed, absent",
        SeverableStatus::SeveredMismatch => "severed, DIGEST MISMATCH",
    };
    let doc = json!({
        "envelope_bytes": bytes.len(),
        "authenticated": authenticated,
        "sequence_number": m.sequence_number(),
        "reference_uri": m.reference_uri(),
        "components": components,
        "precursor": suit_manifest::precursor(&info).map(|p| json!({
            "image_digest": p.image_digest.map(|d| hex(&d.0)),
            "image_size": p.image_size,
        })),
        "install": status(keys::manifest::INSTALL),
        "text": status(keys::manifest::TEXT),
        "payloads": env.integrated_payloads().map(|p| json!({"name": p.name, "bytes": p.bytes.len()})).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "envelope      {} bytes, {}",
        bytes.len(),
        if authenticated {
            "signature verified"
        } else {
            "signature NOT checked (pass --key)"
        }
    );
    println!("sequence      {}", m.sequence_number());
    if let Some(r) = m.reference_uri() {
        println!("reference-uri {r}");
    }
    for (i, c) in info.iter().flatten().enumerate() {
        println!(
            "component {i}   [{}]",
            c.id.parts().map(hex).collect::<Vec<_>>().join(", ")
        );
        println!(
            "  vendor-id   {}",
            c.vendor_id.map(uuid).unwrap_or_else(|| "-".into())
        );
        println!(
            "  class-id    {}",
            c.class_id.map(uuid).unwrap_or_else(|| "-".into())
        );
        println!(
            "  digest      {}",
            c.image_digest
                .map(|d| format!("sha-256:{}", hex(&d.0)))
                .unwrap_or_else(|| "-".into())
        );
        println!(
            "  size        {}",
            c.image_size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into())
        );
        println!("  uri         {}", c.uri.unwrap_or("-"));
        println!("  version     {}", c.version.unwrap_or("-"));
        if let Some(format) = c.payload_format {
            println!(
                "  payload     {} (a patch against the precursor)",
                format.as_str()
            );
        }
    }
    if let Some(p) = suit_manifest::precursor(&info) {
        println!(
            "precursor     sha-256:{}, {} bytes (the device's active image must be this one)",
            p.image_digest
                .map(|d| hex(&d.0))
                .unwrap_or_else(|| "-".into()),
            p.image_size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!("install       {}", status(keys::manifest::INSTALL));
    println!("text          {}", status(keys::manifest::TEXT));
    Ok(())
}

fn load_anchor(path: &Path) -> Result<TrustAnchor> {
    let key = keyfile::verifying_key_from_text(&read_text(path)?)
        .with_context(|| format!("{}", path.display()))?;
    Ok(TrustAnchor::from_key(key))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
