#!/bin/sh
# Applies the vocabulary renames of issue 13 point 5 (branch `vocab`) to a source tree.
# Usage: sh tools-renames.sh [TREE]   (default: the current directory). Idempotent: a second run
# changes nothing. Skips target/, .git/ and interop/rust-peer/ (a foreign peer). Run `cargo fmt`
# afterwards (a removed import can leave a use list that rustfmt re-wraps).
#
# Renames:
#   libp2p_mplex::MplexConfig    -> libp2p_mplex::Config
#   libp2p_noise::NoiseConfig    -> libp2p_noise::Config
#   libp2p_secio::SecioConfig    -> libp2p_secio::Config
#   libp2p_tls::TlsConfig        -> libp2p_tls::Config
#   libp2p_host::HostConfig      -> libp2p_host::Config
#   libp2p_core::UpgradeConfig   -> libp2p_core::pipeline::Config (no re-export at the root)
#   libp2p_kad::PROTOCOL_NAME    -> libp2p_kad::PROTOCOL
#   libp2p_yamux::PROTOCOL_NAME  -> libp2p_yamux::PROTOCOL
#   Mplex::new(config), Yamux::new(config) -> Mplex::with_config(config), Yamux::with_config(config)
#     (`new()` now takes no argument)
#
# Inside the owning crate (its src/, tests/, benches/, examples/) a bare old name becomes bare
# `Config`. Everywhere else (other crates, fuzz/, and every .md file) the old name is dropped from
# `use <crate>::{..}` lists and each use is written qualified, `<crate>::Config`, so a file that
# also imports another crate's `Config` stays unambiguous.
set -eu
cd "${1:-.}"

files() {
    find . \( -path ./target -o -path '*/target' -o -path ./.git -o -path ./interop/rust-peer \) -prune \
        -o -type f \( -name '*.rs' -o -name '*.md' \) -print | sort
}

# rename OLD CRATE_DIR CRATE_IDENT NEW_INSIDE QUALIFIED_NEW
rename() {
    old=$1 dir=$2 ident=$3 inside=$4 qualified=$5
    files | while read -r f; do
        grep -qw "$old" "$f" || continue
        case "$f" in
            ./"$dir"/*.rs)
                OLD=$old NEW=$inside perl -0pi -e 's/\b\Q$ENV{OLD}\E\b/$ENV{NEW}/g' "$f"
                ;;
            *)
                OLD=$old IDENT=$ident Q=$qualified perl -0pi -e '
                    my ($old, $ident, $q) = ($ENV{OLD}, $ENV{IDENT}, $ENV{Q});
                    # `use crate::Old;` on its own line: the qualified uses below need no import.
                    s/^[ \t]*use \Q$ident\E::\Q$old\E;[ \t]*\n//mg;
                    # Drop Old from `use crate::{..}` lists (one or several lines).
                    s#(use \Q$ident\E::\{[^}]*?)\b\Q$old\E\b[ \t]*,?[ \t\n]*#$1#g;
                    s#use \Q$ident\E::\{[ \t\n]*(\w+)[ \t\n]*,?[ \t\n]*\};#use ${ident}::$1;#g;
                    # Qualified paths, then the bare uses left.
                    s/\b\Q$ident\E::\Q$old\E\b/$q/g;
                    s/(?<![\w:])\Q$old\E\b/$q/g;
                ' "$f"
                ;;
        esac
    done
}

rename MplexConfig libp2p-mplex libp2p_mplex Config libp2p_mplex::Config
rename NoiseConfig libp2p-noise libp2p_noise Config libp2p_noise::Config
rename SecioConfig libp2p-secio libp2p_secio Config libp2p_secio::Config
rename TlsConfig libp2p-tls libp2p_tls Config libp2p_tls::Config
rename HostConfig libp2p-host libp2p_host Config libp2p_host::Config

# The pipeline's config: `Config` inside pipeline.rs, `crate::pipeline::Config` elsewhere in core
# (dropped from core's root re-export), `libp2p_core::pipeline::Config` outside core.
if [ -f libp2p-core/src/lib.rs ]; then
    perl -0pi -e 's#(pub use pipeline::\{[^}]*?),[ \t\n]*UpgradeConfig\b#$1#g;
                  s#(pub use pipeline::\{[^}]*?)\bUpgradeConfig\b,[ \t\n]*#$1#g' libp2p-core/src/lib.rs
fi
if [ -f libp2p-core/src/pipeline.rs ]; then
    perl -0pi -e 's/\bUpgradeConfig\b/Config/g' libp2p-core/src/pipeline.rs
fi
files | while read -r f; do
    grep -qw UpgradeConfig "$f" || continue
    case "$f" in
        ./libp2p-core/*.rs)
            perl -0pi -e 's#(use crate::\{[^}]*?)\bUpgradeConfig\b[ \t]*,?[ \t\n]*#$1#g;
                          s/^[ \t]*use crate::UpgradeConfig;[ \t]*\n//mg;
                          s/\bcrate::UpgradeConfig\b/crate::pipeline::Config/g;
                          s/(?<![\w:])UpgradeConfig\b/crate::pipeline::Config/g' "$f"
            ;;
        *)
            perl -0pi -e 's#(use libp2p_core::\{[^}]*?)\bUpgradeConfig\b[ \t]*,?[ \t\n]*#$1#g;
                          s/^[ \t]*use libp2p_core::UpgradeConfig;[ \t]*\n//mg;
                          s/\blibp2p_core::UpgradeConfig\b/libp2p_core::pipeline::Config/g;
                          s/(?<![\w:])UpgradeConfig\b/libp2p_core::pipeline::Config/g' "$f"
            ;;
    esac
done

# Protocol ids: `PROTOCOL` in every crate (kad and yamux were the two `PROTOCOL_NAME`s).
files | while read -r f; do
    grep -qw PROTOCOL_NAME "$f" || continue
    perl -0pi -e 's/\bPROTOCOL_NAME\b/PROTOCOL/g' "$f"
done

# One constructor shape (step 5): `Mplex::new()` / `Yamux::new()` take no argument (the default
# `Config`, as `Default`); `with_config(Config)` takes one. An old `new(config)` call becomes
# `with_config(config)`; a call `new()` is left alone, so a second run changes nothing.
files | while read -r f; do
    grep -qE '\b(Mplex|Yamux)::new\(' "$f" || continue
    perl -pi -e 's/\b(Mplex|Yamux)::new\((?!\))/$1::with_config(/g' "$f"
done
