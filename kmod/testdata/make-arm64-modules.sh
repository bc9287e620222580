#!/bin/sh
# make-arm64-modules.sh makes the aarch64 test material of package kmod with
# the kernel's own tools: two small arm64 kernels cross-built by kbuild from
# Debian's linux-source-6.1 (the same 6.1.192 source as the amd64 headers
# make-modules.sh uses), one with 4 KB pages and one with 64 KB pages
# (CONFIG_ARM64_64K_PAGES, what RHEL's kernel-64k is), and the test modules
# built against each. Each kernel gives what the DTK recipe copies to
# /etc/driver-toolkit/<uname -r>/ (its own Module.symvers, modules.dep,
# modules.builtin, vermagic); the modules are real aarch64 ELF files. See
# README.md.
#
#   kmod/testdata/make-arm64-modules.sh        # into kmod/testdata and internal/kmodtest/world
#
# Needs (Debian 12): apt-get install gcc-aarch64-linux-gnu linux-source-6.1 make flex bison bc kmod xz-utils
# About 10 minutes on 2 cores (two kernels of a few hundred objects each).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
worldout=$(cd "$here/../../internal/kmodtest" && pwd)/world
src=/usr/src/linux-source-6.1.tar.xz
cross=aarch64-linux-gnu-
placeholder=0.0.0-dtkbot.world.placeholder.release.48.chars_

missing=""
for tool in make flex bison bc xz depmod modinfo modprobe "${cross}gcc" "${cross}strip"; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -f "$src" ] || missing="$missing $src"
if [ -n "$missing" ]; then
	echo "make-arm64-modules.sh: missing:$missing" >&2
	echo "install: apt-get install gcc-aarch64-linux-gnu linux-source-6.1 make flex bison bc kmod xz-utils" >&2
	exit 3
fi

work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)

# kernel pages release: one small arm64 kernel, with modules and
# modversions, SMP and preemption as RHEL's aarch64 kernels (vermagic
# "SMP preempt mod_unload modversions aarch64"), crc-itu-t as a
# module (dtkbot_user depends on it), and the page size asked.
kernel() { # pages(4k|64k) release
	t="$work/linux-$1"
	if [ ! -f "$t/Makefile" ]; then
		mkdir -p "$t"
		tar -xJf "$src" -C "$t" --strip-components=1
	fi
	m="make -s -C $t ARCH=arm64 CROSS_COMPILE=$cross"
	$m allnoconfig >/dev/null
	{
		echo CONFIG_MODULES=y
		echo CONFIG_MODULE_UNLOAD=y
		echo CONFIG_MODVERSIONS=y
		echo CONFIG_SMP=y
		echo CONFIG_PREEMPT=y
		echo CONFIG_CRC_ITU_T=m
		echo CONFIG_LOCALVERSION_AUTO=n
		if [ "$1" = 64k ]; then echo CONFIG_ARM64_64K_PAGES=y; else echo CONFIG_ARM64_4K_PAGES=y; fi
	} >"$t/arch/arm64/configs/dtkbot.config"
	$m allnoconfig dtkbot.config >/dev/null
	$m olddefconfig >/dev/null
	$m KERNELRELEASE="$2" -j"$(nproc)" Image modules >"$t/build.log" 2>&1 || { tail -40 "$t/build.log" >&2; exit 1; }
	rm -rf "$work/install-$1"
	$m KERNELRELEASE="$2" INSTALL_MOD_PATH="$work/install-$1" DEPMOD=/bin/true modules_install >/dev/null
	depmod -b "$work/install-$1" "$2"
}

# modules pages release dest: the test modules built against kernel
# pages, their vermagic naming release (include/generated/utsrelease.h,
# which include/linux/vermagic.h puts first), stripped of debug info.
modules() {
	t="$work/linux-$1"
	echo "#define UTS_RELEASE \"$2\"" >"$t/include/generated/utsrelease.h"
	echo "$2" >"$t/include/config/kernel.release"
	b="$work/build-$1-$2"
	rm -rf "$b"
	mkdir -p "$b"
	cp -r "$here/src/dtkbot_hello" "$here/src/dtkbot_user" "$b/"
	m="make -s -C $t ARCH=arm64 CROSS_COMPILE=$cross"
	$m M="$b/dtkbot_hello" modules >"$b/hello.log" 2>&1 || { cat "$b/hello.log" >&2; exit 1; }
	$m M="$b/dtkbot_user" KBUILD_EXTRA_SYMBOLS="$b/dtkbot_hello/Module.symvers" modules >"$b/user.log" 2>&1 || { cat "$b/user.log" >&2; exit 1; }
	rm -rf "$3"
	mkdir -p "$3"
	for mod in dtkbot_hello dtkbot_user; do
		cp "$b/$mod/$mod.ko" "$3/$mod.ko"
		"${cross}strip" --strip-debug "$3/$mod.ko"
	done
}

# kernelfiles pages release dest: what the DTK recipe copies.
kernelfiles() {
	t="$work/linux-$1"
	d="$work/install-$1/lib/modules/$2"
	rm -rf "$3"
	mkdir -p "$3"
	xz -9 -c "$t/Module.symvers" >"$3/Module.symvers.xz"
	xz -9 -c "$d/modules.dep" >"$3/modules.dep.xz"
	xz -9 -c "$d/modules.builtin" >"$3/modules.builtin.xz"
	modinfo -F vermagic "$(find "$d/kernel" -name 'crc-itu-t.ko*' | head -1)" >"$3/vermagic"
	{
		echo "Module.symvers, modules.dep, modules.builtin, vermagic: linux-source-6.1 $version, ARCH=arm64 allnoconfig with" \
			"$(paste -sd' ' "$t/arch/arm64/configs/dtkbot.config")"
		echo "built by $(${cross}gcc --version | head -1); modules.dep by depmod $(depmod -V | head -1 | sed 's/^kmod version //')"
	} >"$3/SOURCE"
}

for pages in 4k 64k; do
	release=6.1.192-dtkbot-arm64 # as RHEL names them: 64k is the same build's "+64k"
	[ "$pages" = 64k ] && release=$release+64k
	kernel "$pages" "$release"
	kernelfiles "$pages" "$release" "$here/kernels/$release"
	modules "$pages" "$release" "$here/modules/$release"
	kernelfiles "$pages" "$release" "$worldout/kernels/$release"
	modules "$pages" "$placeholder" "$worldout/template-arm64-$pages"
done
