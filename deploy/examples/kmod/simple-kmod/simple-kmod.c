// A minimal out-of-tree module, to show the driver-container build.
#include <linux/init.h>
#include <linux/module.h>

static int __init simple_kmod_init(void)
{
	pr_info("simple-kmod: loaded\n");
	return 0;
}

static void __exit simple_kmod_exit(void)
{
	pr_info("simple-kmod: unloaded\n");
}

module_init(simple_kmod_init);
module_exit(simple_kmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("dtkbot example module");
