#!/usr/bin/env bash
# Regenerates third_party/gloo: the Gloo headers that src/dist/shim.cpp needs through libtorch's
# ProcessGroupGloo.hpp (15 files, the transitive closure `g++ -M` finds), taken from Debian's
# libgloo-dev, with its licence. They are declarations only: the Gloo code that runs is the copy
# compiled into libtorch_cpu. Vendored so that every build (`make demo`, `cargo build`) has
# multi-process training without a system package. Needs apt-get (no root: `apt-get download`)
# and the libtorch of scripts/setup-libtorch.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup-libtorch.sh --env)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download libgloo-dev >/dev/null && dpkg-deb -x libgloo-dev_*.deb x)
version=$(cd "$work" && ls libgloo-dev_*.deb | sed 's/libgloo-dev_\(.*\)_.*\.deb/\1/')
needed=$(g++ -std=c++17 -M -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_GLOO -I"$LIBTORCH/include" \
  -I"$LIBTORCH/include/torch/csrc/api/include" -I"$work/x/usr/include" src/dist/shim.cpp \
  | tr ' \\' '\n\n' | grep "$work/x/usr/include/gloo/" | sed "s|$work/x/usr/include/||" | sort -u)
rm -rf third_party/gloo
mkdir -p third_party/gloo/include
for h in $needed; do
  install -D -m 0644 "$work/x/usr/include/$h" "third_party/gloo/include/$h"
done
cp "$work/x/usr/share/doc/libgloo-dev/copyright" third_party/gloo/LICENSE
cat > third_party/gloo/README.md <<README
# Gloo headers (vendored)

The $(echo "$needed" | wc -l) headers of [Gloo](https://github.com/facebookincubator/gloo) that libtorch's
\`ProcessGroupGloo.hpp\` includes, so that \`src/dist/shim.cpp\` (multi-process training on CPU) compiles on
every machine without \`libgloo-dev\`. Declarations only: the Gloo code that runs is libtorch's own.

- Source: Debian's \`libgloo-dev\` $version, unchanged.
- Licence: BSD-3-Clause, in \`LICENSE\` (Debian's copyright file of the package).
- Regenerate: \`bash scripts/vendor-gloo-headers.sh\`.
README
echo "vendored $(echo "$needed" | wc -l) headers of libgloo-dev $version into third_party/gloo"
