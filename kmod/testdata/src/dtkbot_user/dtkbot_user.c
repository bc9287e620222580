// SPDX-License-Identifier: GPL-2.0
/*
 * dtkbot_user: depends on dtkbot_hello (a symbol of another out-of-tree
 * module) and on crc-itu-t (an in-tree module of the kernel), for dtkbot's
 * dependency tests.
 */
#include <linux/module.h>
#include <linux/crc-itu-t.h>

int dtkbot_hello_greet(const char *who);

static int __init dtkbot_user_init(void)
{
	static const u8 data[] = "dtkbot";
	u16 crc = crc_itu_t(0, data, sizeof(data) - 1);

	pr_info("dtkbot_user: crc %04x\n", crc);
	return dtkbot_hello_greet("dtkbot_user") > 0 ? 0 : -EINVAL;
}

static void __exit dtkbot_user_exit(void)
{
}

module_init(dtkbot_user_init);
module_exit(dtkbot_user_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("dtkbot test module: depends on dtkbot_hello and crc-itu-t");
MODULE_VERSION("1.0");
