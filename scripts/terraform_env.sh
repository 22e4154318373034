#!/usr/bin/env bash
# Point terraform at the offline provider mirror.
#
# Writes a CLI config file whose provider_installation uses only the local
# filesystem mirror for registry.terraform.io providers, and prints the export
# line. Usage:
#
#   eval "$(scripts/terraform_env.sh)"        # then terraform init works offline
#
# TF_PLUGIN_MIRROR overrides the mirror path (default /opt/tf-plugins);
# TF_CLI_CONFIG_OUT overrides where the file is written.
set -euo pipefail

MIRROR="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
OUT="${TF_CLI_CONFIG_OUT:-${XDG_CACHE_HOME:-$HOME/.cache}/pgautodumper/terraformrc}"

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<HCL
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
HCL
echo "export TF_CLI_CONFIG_FILE=$OUT"
