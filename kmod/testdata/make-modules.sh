#!/bin/sh
# make-modules.sh regenerates the kernel modules, certificates and kernel-side
# files under kmod/testdata with the kernel's own tools: out-of-tree modules
# built by kbuild against Debian's linux-headers packages, signed by
# linux-kbuild's scripts/sign-file, compressed by xz, zstd and gzip as
# distributions ship them. See README.md for what each file is.
#
#   kmod/testdata/make-modules.sh                    # everything, into kmod/testdata
#   kmod/testdata/make-modules.sh --modules-only DIR # modules and certificates only, into DIR (no network)
#
# Needs (Debian 12): apt-get install gcc make binutils kmod xz-utils zstd gzip openssl linux-kbuild-6.1 \
#   linux-headers-6.1.0-57-cloud-amd64 linux-headers-6.1.0-57-rt-amd64 linux-headers-6.1.0-56-cloud-amd64
# The kernel-side files (not with --modules-only) also download the three
# linux-image packages with `apt-get download`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
modules_only=false
if [ "${1:-}" = "--modules-only" ]; then
	modules_only=true
	shift
fi
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# The test world's material goes to package internal/kmodtest, which embeds
# it (the demo's binary carries it); with --modules-only DIR, to DIR/world.
if [ "$out" = "$here" ]; then
	worldout=$(cd "$here/../../internal/kmodtest" && pwd)/world
else
	worldout=$out/world
fi

cloud=6.1.0-57-cloud-amd64  # the kernel the modules are checked against
rt=6.1.0-57-rt-amd64        # the other flavour of the same build
older=6.1.0-56-cloud-amd64  # another ABI of the same flavour
kernels="$cloud $rt $older"
sign_file=${SIGN_FILE:-/usr/lib/linux-kbuild-6.1/scripts/sign-file}

missing=""
for tool in make gcc strip readelf openssl xz zstd gzip od dd; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -x "$sign_file" ] || missing="$missing $sign_file"
for k in $kernels; do
	[ -f "/usr/src/linux-headers-$k/Module.symvers" ] || missing="$missing linux-headers-$k"
done
if ! $modules_only; then
	for tool in apt-get dpkg-deb dpkg-query depmod modinfo modprobe; do
		command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
	done
fi
if [ -n "$missing" ]; then
	echo "make-modules.sh: missing:$missing" >&2
	echo "install: apt-get install gcc make binutils kmod xz-utils zstd gzip openssl linux-kbuild-6.1 linux-headers-$cloud linux-headers-$rt linux-headers-$older" >&2
	exit 3
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Keys and certificates, made as the kernel's certs/Makefile makes its
# signing key (openssl req -x509 with the extensions of
# certs/default_x509.genkey). The private keys stay in $work and are removed.
genkey() { # name CN [ec]
	cat >"$work/$1.genkey" <<EOF
[ req ]
default_bits = 2048
distinguished_name = req_distinguished_name
prompt = no
string_mask = utf8only
x509_extensions = myexts

[ req_distinguished_name ]
O = dtkbot tests
CN = $2

[ myexts ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
	newkey=""
	if [ "${3:-}" = ec ]; then
		newkey="-newkey ec -pkeyopt ec_paramgen_curve:secp384r1"
	fi
	# shellcheck disable=SC2086 # newkey is two options or none
	openssl req -new -nodes -utf8 -sha256 -days 36500 -batch -x509 $newkey \
		-config "$work/$1.genkey" -outform PEM -out "$work/$1.pem" -keyout "$work/$1.key" 2>/dev/null
}
genkey trusted "dtkbot test signing key (trusted)"
genkey trusted-ec "dtkbot test signing key (trusted, ECDSA)" ec
genkey other "dtkbot test signing key (not trusted)"
mkdir -p "$out/certs"
cp "$work/trusted.pem" "$work/trusted-ec.pem" "$work/other.pem" "$out/certs/"
openssl x509 -in "$work/trusted.pem" -outform DER -out "$out/certs/trusted.der"

# Build both modules against each kernel's headers: dtkbot_hello, then
# dtkbot_user against dtkbot_hello's Module.symvers. Debug info is
# stripped, as INSTALL_MOD_STRIP=1 does, before anything is signed.
for k in $kernels; do
	b="$work/build/$k"
	mkdir -p "$b"
	cp -r "$here/src/dtkbot_hello" "$here/src/dtkbot_user" "$b/"
	make -s -C "/usr/src/linux-headers-$k" M="$b/dtkbot_hello" modules >"$b/hello.log" 2>&1 || { cat "$b/hello.log" >&2; exit 1; }
	make -s -C "/usr/src/linux-headers-$k" M="$b/dtkbot_user" KBUILD_EXTRA_SYMBOLS="$b/dtkbot_hello/Module.symvers" modules >"$b/user.log" 2>&1 || { cat "$b/user.log" >&2; exit 1; }
	dest="$out/modules/$k"
	rm -rf "$dest"
	mkdir -p "$dest"
	for m in dtkbot_hello dtkbot_user; do
		cp "$b/$m/$m.ko" "$dest/$m.ko"
		strip --strip-debug "$dest/$m.ko"
	done
done

# Signed, and signed wrongly, for the kernel the checks are about.
d="$out/modules/$cloud"
signed() { # dir hash key [-k]
	mkdir -p "$d/$1"
	for m in dtkbot_hello dtkbot_user; do
		"$sign_file" ${4:-} "$2" "$work/$3.key" "$work/$3.pem" "$d/$m.ko" "$d/$1/$m.ko"
	done
}
signed signed sha256 trusted          # signer by issuer and serial number
signed signed-keyid sha512 trusted -k # signer by subject key identifier
signed signed-ecdsa sha384 trusted-ec
signed signed-other sha256 other

# Signed with signed attributes (openssl cms's default: content type,
# signing time, message digest), which the kernel refuses in a module
# signature; the trailer is the one sign-file writes.
mkdir -p "$d/signed-attrs"
openssl cms -sign -binary -nocerts -outform DER -md sha256 -signer "$work/trusted.pem" -inkey "$work/trusted.key" \
	-in "$d/dtkbot_hello.ko" -out "$work/attrs.p7"
n=$(wc -c <"$work/attrs.p7")
{
	cat "$d/dtkbot_hello.ko" "$work/attrs.p7"
	# struct module_signature: algo, hash, id_type (2: PKCS#7), signer_len, key_id_len, __pad[3], __be32 sig_len
	printf '\000\000\002\000\000\000\000\000'
	# shellcheck disable=SC2059 # the format is the octal escapes of sig_len's bytes
	printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
	printf '~Module signature appended~\n'
} >"$d/signed-attrs/dtkbot_hello.ko"

# Tampered after signing: one byte of .text flipped.
mkdir -p "$d/tampered"
cp "$d/signed/dtkbot_hello.ko" "$d/tampered/dtkbot_hello.ko"
text=$(readelf -SW "$d/tampered/dtkbot_hello.ko" | sed -n 's/^ *\[ *[0-9]*\] //p' | awk '$1 == ".text" { print $4 }')
off=$((0x$text + 16))
byte=$(od -An -tu1 -j "$off" -N1 "$d/tampered/dtkbot_hello.ko" | tr -d ' ')
# shellcheck disable=SC2059 # the format is the octal escape of the new byte
printf "\\$(printf %o $((byte ^ 255)))" | dd of="$d/tampered/dtkbot_hello.ko" bs=1 seek="$off" conv=notrunc 2>/dev/null

# Compressed after signing, as distributions ship modules: the signature is
# inside the compressed payload. xz as RHEL and kbuild compress (CRC32
# check, 1 MiB dictionary: scripts/Makefile.modinst), zstd, gzip.
for m in dtkbot_hello dtkbot_user; do
	xz --check=crc32 --lzma2=dict=1MiB -c "$d/signed/$m.ko" >"$d/signed/$m.ko.xz"
	zstd -q -19 -c "$d/signed/$m.ko" >"$d/signed/$m.ko.zst"
	gzip -9 -n -c "$d/signed/$m.ko" >"$d/signed/$m.ko.gz"
done

# The test world's modules (internal/kmodtest/world/): the
# same sources built by kbuild against the same headers, with another
# `uname -r`, since dtkbot's test world has RHCOS-like kernels
# (5.14.0-427.37.1.el9_4.x86_64), not Debian's. A copy of the headers tree
# with its release changed (include/generated/utsrelease.h, which
# include/linux/vermagic.h puts first in every vermagic) builds them:
#   world/template-<flavour>/: release $placeholder, a placeholder 48
#     characters long that kmodtest overwrites in .modinfo with the world
#     kernel's release, NUL-padded (the kernel and libkmod skip runs of NULs
#     between .modinfo strings), so one build serves every world kernel;
#     unsigned (a signature would no longer verify after the patch);
#   world/<release>/signed[-other]/: release $world exactly, signed as above
#     by the trusted key and by the other, for the pass's Secure Boot tests.
placeholder=0.0.0-dtkbot.world.placeholder.release.48.chars_
world=5.14.0-427.37.1.el9_4.x86_64
worldbuild() { # flavour-kernel release dest
	h="$work/headers/$2"
	rm -rf "$h"
	mkdir -p "$work/headers"
	cp -a "/usr/src/linux-headers-$1" "$h"
	for l in scripts tools; do # relative links: to where they point from /usr/src
		ln -sfn "$(readlink -f "/usr/src/linux-headers-$1/$l")" "$h/$l"
	done
	sed -i "s/^override KERNELRELEASE = .*/override KERNELRELEASE = $2/" "$h/.kernelvariables"
	echo "#define UTS_RELEASE \"$2\"" >"$h/include/generated/utsrelease.h"
	b="$work/wbuild/$2-$1"
	rm -rf "$b"
	mkdir -p "$b"
	cp -r "$here/src/dtkbot_hello" "$here/src/dtkbot_user" "$b/"
	make -s -C "$h" M="$b/dtkbot_hello" modules >"$b/hello.log" 2>&1 || { cat "$b/hello.log" >&2; exit 1; }
	make -s -C "$h" M="$b/dtkbot_user" KBUILD_EXTRA_SYMBOLS="$b/dtkbot_hello/Module.symvers" modules >"$b/user.log" 2>&1 || { cat "$b/user.log" >&2; exit 1; }
	rm -rf "$3"
	mkdir -p "$3"
	for m in dtkbot_hello dtkbot_user; do
		cp "$b/$m/$m.ko" "$3/$m.ko"
		strip --strip-debug "$3/$m.ko"
	done
}
worldbuild "$cloud" "$placeholder" "$worldout/template-cloud"
worldbuild "$rt" "$placeholder" "$worldout/template-rt"
worldbuild "$cloud" "$world" "$work/world-unsigned"
for v in signed:trusted signed-other:other; do
	mkdir -p "$worldout/$world/${v%%:*}"
	for m in dtkbot_hello dtkbot_user; do
		"$sign_file" sha256 "$work/${v##*:}.key" "$work/${v##*:}.pem" "$work/world-unsigned/$m.ko" "$worldout/$world/${v%%:*}/$m.ko"
	done
done
mkdir -p "$worldout/certs"
cp "$out/certs/trusted.pem" "$out/certs/other.pem" "$worldout/certs/"

$modules_only && exit 0

# The kernel's side. Module.symvers comes from the linux-headers package;
# modules.builtin and a vermagic (modinfo of the in-tree crc-itu-t.ko) from
# the linux-image package, extracted with dpkg-deb; modules.dep is made by
# depmod over that extracted tree, as the package's postinst would make it.
# The standard kernel's Module.symvers is kept whole (a realistic size for
# measurements); the other two are filtered to the symbols the test modules
# use (every check looks up only those). Large files are xz-compressed.
used="$work/used-symbols"
for f in "$out"/modules/*/dtkbot_*.ko; do
	modprobe --dump-modversions "$f" | cut -f2
done | sort -u >"$used"
for k in $kernels; do
	kd="$out/kernels/$k"
	rm -rf "$kd"
	mkdir -p "$kd"
	(cd "$work" && apt-get download -q "linux-image-$k" >/dev/null 2>&1) || { echo "apt-get download linux-image-$k failed" >&2; exit 1; }
	deb=$(ls "$work"/linux-image-"$k"_*.deb)
	x="$work/image-$k"
	dpkg-deb -x "$deb" "$x"
	depmod -b "$x" "$k"
	xz -9 -c "$x/lib/modules/$k/modules.dep" >"$kd/modules.dep.xz"
	xz -9 -c "$x/lib/modules/$k/modules.builtin" >"$kd/modules.builtin.xz"
	modinfo -F vermagic "$x/lib/modules/$k/kernel/lib/crc-itu-t.ko" >"$kd/vermagic"
	symvers="/usr/src/linux-headers-$k/Module.symvers"
	if [ "$k" = "$cloud" ]; then
		xz -9 -c "$symvers" >"$kd/Module.symvers.xz"
	else
		awk -F'\t' 'NR == FNR { used[$1] = 1; next } used[$2]' "$used" "$symvers" | xz -9 -c >"$kd/Module.symvers.xz"
	fi
	{
		echo "Module.symvers: $(dpkg-query -W -f='${Package} ${Version}' "linux-headers-$k") ($(wc -l <"$symvers") lines; $( [ "$k" = "$cloud" ] && echo whole || echo "filtered to the symbols of the test modules"))"
		echo "modules.builtin, vermagic: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
		echo "modules.dep: depmod $(depmod -V | head -1 | sed 's/^kmod version //') over that package's tree"
	} >"$kd/SOURCE"
done
{
	echo "Built with:"
	for p in gcc-12 make kmod xz-utils zstd gzip openssl linux-kbuild-6.1; do
		dpkg-query -W -f='  ${Package} ${Version}\n' "$p" 2>/dev/null || true
	done
} >"$out/modules/TOOLS"
# The world's DTK images carry these kernels' files (internal/kmodtest).
rm -rf "$worldout/kernels"
cp -r "$out/kernels" "$worldout/kernels"
