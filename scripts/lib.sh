# Shared helpers for Krater's scripts (sourced, not run).

# apt_ensure PKG...: installs the Debian packages that are missing (apt-get update first, once).
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo ">> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# node_ensure: Node.js 20+ with npm (Debian 12's nodejs is 18: use the machine's Node when it is newer).
node_ensure() {
  if ! command -v node >/dev/null 2>&1; then apt_ensure nodejs npm; fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "Krater needs Node.js 20 or newer (found $(node --version))." >&2
    exit 1
  fi
}

# npm_ensure: dependencies installed exactly as locked, and the TypeScript built.
npm_ensure() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # `npm install` honours package-lock.json; `npm ci` rejects locks written by npm 11 on one platform (it wants
    # every other platform's optional binaries listed too).
    echo ">> npm install"
    npm install --no-audit --no-fund --loglevel=error
  fi
  echo ">> build"
  npx tsc -p tsconfig.json
}
