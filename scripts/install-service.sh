#!/bin/sh
# Install GrapeVineFS as a service.
#
#   scripts/install-service.sh [--prefix DIR] [--systemd | --rcd] [--destdir DIR]
#                              [--bindir DIR] [--unitdir DIR] [--confdir DIR]
#                              [--no-build] [--no-deps] [--node PATH]
#
# Installs the built project into PREFIX (default /opt/grapevine):
#   PREFIX/app/{dist,package.json,package-lock.json,node_modules,README.md,zones.example.toml}
#   PREFIX/bin/gv                 launcher: exec <node> PREFIX/app/dist/cli/main.js "$@"
#   BINDIR/gv -> PREFIX/bin/gv    (default /usr/local/bin)
# and the service definition:
#   --systemd  UNITDIR/gvd.service (default /etc/systemd/system)
#   --rcd      UNITDIR/gvd         (default /usr/local/etc/rc.d)
# (default: systemd when /run/systemd/system exists, rc.d on FreeBSD), plus
# CONFDIR/gv.toml.example (default /etc/grapevine, /usr/local/etc/grapevine with --rcd).
# An existing gv.toml is never touched.
#
# --destdir DIR  stage everything under DIR (packaging; paths inside files stay un-prefixed)
# --no-build     use the dist/ already built (otherwise: npm ci && npm run build here)
# --no-deps      do not run `npm ci --omit=dev` in PREFIX/app (dependencies provided otherwise)
# --node PATH    node binary the launcher runs (default: `command -v node`)
set -eu

die() { echo "install-service: $*" >&2; exit 2; }

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/grapevine
DESTDIR=${DESTDIR:-}
KIND=""
BINDIR=/usr/local/bin
UNITDIR=""
CONFDIR=""
BUILD=1
DEPS=1
NODE=""

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
	--prefix=*) PREFIX=${1#*=}; shift ;;
	--destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; DESTDIR=$2; shift 2 ;;
	--destdir=*) DESTDIR=${1#*=}; shift ;;
	--bindir) [ $# -ge 2 ] || die "--bindir needs a directory"; BINDIR=$2; shift 2 ;;
	--unitdir) [ $# -ge 2 ] || die "--unitdir needs a directory"; UNITDIR=$2; shift 2 ;;
	--confdir) [ $# -ge 2 ] || die "--confdir needs a directory"; CONFDIR=$2; shift 2 ;;
	--node) [ $# -ge 2 ] || die "--node needs a path"; NODE=$2; shift 2 ;;
	--systemd) KIND=systemd; shift ;;
	--rcd) KIND=rcd; shift ;;
	--no-build) BUILD=0; shift ;;
	--no-deps) DEPS=0; shift ;;
	-h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path (got '$PREFIX')" ;; esac
case "$BINDIR" in /*) ;; *) die "--bindir must be an absolute path (got '$BINDIR')" ;; esac
if [ -z "$KIND" ]; then
	if [ -d /run/systemd/system ]; then KIND=systemd
	elif [ "$(uname -s)" = FreeBSD ]; then KIND=rcd
	else die "cannot tell the service manager: pass --systemd or --rcd"
	fi
fi
if [ "$KIND" = systemd ]; then
	: "${UNITDIR:=/etc/systemd/system}"
	: "${CONFDIR:=/etc/grapevine}"
else
	: "${UNITDIR:=/usr/local/etc/rc.d}"
	: "${CONFDIR:=/usr/local/etc/grapevine}"
fi
if [ -z "$NODE" ]; then
	NODE=$(command -v node) || die "node not found in PATH (install Node.js 20+ or pass --node PATH)"
fi
[ -x "$NODE" ] || die "node binary '$NODE' is not executable"

if [ "$BUILD" = 1 ]; then
	echo "install-service: building in $SRC"
	(cd "$SRC" && npm ci && npm run build)
fi
[ -f "$SRC/dist/cli/main.js" ] || die "$SRC/dist/cli/main.js is missing: build first (npm run build) or drop --no-build"

APP="$DESTDIR$PREFIX/app"
echo "install-service: installing into $APP"
mkdir -p "$APP" "$DESTDIR$PREFIX/bin"
rm -rf "$APP/dist"
cp -R "$SRC/dist" "$APP/dist"
for f in package.json package-lock.json README.md zones.example.toml; do
	[ -f "$SRC/$f" ] && cp "$SRC/$f" "$APP/$f"
done
if [ "$DEPS" = 1 ]; then
	(cd "$APP" && npm ci --omit=dev --no-audit --no-fund)
fi

# The launcher: absolute paths, so it works from rc scripts whose PATH lacks /usr/local/bin.
cat > "$DESTDIR$PREFIX/bin/gv" <<LAUNCHER
#!/bin/sh
exec "$NODE" "$PREFIX/app/dist/cli/main.js" "\$@"
LAUNCHER
chmod 755 "$DESTDIR$PREFIX/bin/gv"
if [ "$BINDIR" != "$PREFIX/bin" ]; then
	mkdir -p "$DESTDIR$BINDIR"
	ln -sfn "$PREFIX/bin/gv" "$DESTDIR$BINDIR/gv"
fi

# Service definition, with the default prefix and config paths replaced.
mkdir -p "$DESTDIR$UNITDIR"
if [ "$KIND" = systemd ]; then
	sed -e "s|/opt/grapevine|$PREFIX|g" -e "s|/etc/grapevine/gv.toml|$CONFDIR/gv.toml|g" \
		"$SRC/systemd/gvd.service" > "$DESTDIR$UNITDIR/gvd.service"
	chmod 644 "$DESTDIR$UNITDIR/gvd.service"
	UNIT="$UNITDIR/gvd.service"
else
	sed -e "s|/opt/grapevine|$PREFIX|g" -e "s|/usr/local/etc/grapevine/gv.toml|$CONFDIR/gv.toml|g" \
		"$SRC/rc.d/gvd" > "$DESTDIR$UNITDIR/gvd"
	chmod 755 "$DESTDIR$UNITDIR/gvd"
	UNIT="$UNITDIR/gvd"
fi

mkdir -p "$DESTDIR$CONFDIR"
cp "$SRC/zones.example.toml" "$DESTDIR$CONFDIR/gv.toml.example"

echo "install-service: installed $PREFIX/bin/gv, $BINDIR/gv and $UNIT"
if [ ! -f "$DESTDIR$CONFDIR/gv.toml" ]; then
	echo "install-service: next, write $CONFDIR/gv.toml (see $CONFDIR/gv.toml.example, or run: gv init)"
fi
if [ -z "$DESTDIR" ]; then
	if [ "$KIND" = systemd ]; then
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
		echo "install-service: start it with: systemctl enable --now gvd"
	else
		echo "install-service: start it with: sysrc gvd_enable=YES && service gvd start"
	fi
fi
