// SPDX-License-Identifier: GPL-2.0
/*
 * dtkbot_hello: a small out-of-tree module for dtkbot's tests. It uses a few
 * common exported symbols (printk, kmalloc, kstrdup, kfree, a mutex, jiffies,
 * a module parameter), some of whose CRCs differ between a standard and an
 * RT kernel, and exports one symbol for dtkbot_user.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/jiffies.h>

static int repeat = 1;
module_param(repeat, int, 0444);
MODULE_PARM_DESC(repeat, "how often to greet");

static DEFINE_MUTEX(greet_lock);
static char *greeting;
static unsigned long *greeted;

int dtkbot_hello_greet(const char *who)
{
	int i;

	mutex_lock(&greet_lock);
	for (i = 0; i < repeat; i++)
		pr_info("dtkbot_hello: %s, %s (at %lu)\n", greeting, who, jiffies);
	(*greeted)++;
	mutex_unlock(&greet_lock);
	return strlen(who);
}
EXPORT_SYMBOL_GPL(dtkbot_hello_greet);

static int __init dtkbot_hello_init(void)
{
	greeted = kmalloc(sizeof(*greeted), GFP_KERNEL);
	if (!greeted)
		return -ENOMEM;
	*greeted = 0;
	greeting = kstrdup("hello", GFP_KERNEL);
	if (!greeting) {
		kfree(greeted);
		return -ENOMEM;
	}
	return 0;
}

static void __exit dtkbot_hello_exit(void)
{
	pr_info("dtkbot_hello: greeted %lu times\n", *greeted);
	kfree(greeting);
	kfree(greeted);
}

module_init(dtkbot_hello_init);
module_exit(dtkbot_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("dtkbot test module: common exported symbols");
MODULE_VERSION("1.0");
