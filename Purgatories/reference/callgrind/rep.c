/* How callgrind counts a rep-prefixed string instruction: rep stosb over N bytes
 * (docs/accounting.md compares it with the harness's count of the same instruction). */
#include <stdlib.h>

static unsigned char buffer[4096];

__attribute__((noinline)) void rep_stosb(unsigned long n)
{
	void *d = buffer;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(0) : "memory");
}

int main(int argc, char **argv)
{
	rep_stosb(argc > 1 ? strtoul(argv[1], NULL, 0) : 100);
	return 0;
}
