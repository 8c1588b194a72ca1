#!/bin/sh
# The steps of .github/workflows/ci.yml, one subcommand per step: the workflow calls this file,
# and `npm run prove:workflows` calls the same file here (as an unprivileged user with sudo, as
# on a GitHub-hosted runner), so what CI runs is what was tried.
#
#   scripts/ci.sh build <target>         build job: the engine tests when <target> is the host's
#                                        own, then the addon (+ glibc check) and the facade
#   scripts/ci.sh engine-tests           the engine tests, their binaries run as root
#   scripts/ci.sh test <target> <node>   test job: `suite` in a privileged container of that
#                                        libc and Node version
#   scripts/ci.sh suite [ava args]       inside that container, as root: system packages, npm ci,
#                                        the tests' type-check, the ava suite
#
# POSIX sh, not bash: `suite` runs in Alpine images, which have no bash.
set -eu
cd "$(dirname "$0")/.."

host_triple() {
  rustc -vV | sed -n 's/^host: //p'
}

engine_tests() {
  # Cargo and the build run as the invoking user; only the test binaries run as root (they open
  # packet sockets and create namespaces), through cargo's target runner. `sudo cargo test`
  # would either find no toolchain (rustup lives in the runner user's home) or leave target/
  # and ~/.cargo owned by root, and the next build as the runner user would fail.
  runner_var="CARGO_TARGET_$(host_triple | tr 'a-z-' 'A-Z_')_RUNNER"
  env "$runner_var=sudo -E" CI=true cargo test --workspace --locked
}

build() {
  target=$1
  case $target in
    # glibc: the napi-rs cross toolchain links against glibc 2.17, so the binary loads on old
    # distributions too (checked below).
    *-linux-gnu) flags=--use-napi-cross ;;
    # musl: cargo-zigbuild. napi links an addon against the musl C runtime dynamically (the
    # addon shares the libc of the Alpine node that loads it); no static C runtime.
    *-linux-musl) flags=-x ;;
    *) echo "ci.sh: no build recipe for $target" >&2; exit 2 ;;
  esac
  if [ "$target" = "$(host_triple)" ]; then
    echo "== engine tests on $target (the host's own target)"
    engine_tests
  fi
  echo "== build $target"
  npx napi build --platform --release --target "$target" $flags
  case $target in
    *-linux-gnu) node scripts/check-glibc.mjs netring.*.node 2.17 ;;
  esac
  npm run build:ts
}

test_in_container() {
  target=$1
  node=$2
  case $target in
    *-musl) image=node:$node-alpine ;;
    *) image=node:$node-bookworm ;;
  esac
  # Privileged: the tests create namespaces and veth pairs and open packet sockets
  # (CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN); none may skip in CI.
  docker run --rm --privileged -e CI=true -v "$PWD:/netring" -w /netring "$image" sh scripts/ci.sh suite
}

suite() {
  # GitHub's artifacts drop file modes: put the executable bit back on the package's `bin` files.
  node scripts/packages.mjs restore-bin-modes
  node scripts/system-packages.mjs
  npm ci --ignore-scripts --no-audit --no-fund
  # tsx strips types without checking them: check them on every platform and Node.
  npx tsc -p __test__
  npx ava "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  build) build "$@" ;;
  engine-tests) engine_tests ;;
  test) test_in_container "$@" ;;
  suite) suite "$@" ;;
  *) echo "usage: scripts/ci.sh build <target> | engine-tests | test <target> <node> | suite [ava args]" >&2; exit 2 ;;
esac
