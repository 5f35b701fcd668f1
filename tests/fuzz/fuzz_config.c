/* fuzz_config.c: any --config file is read to a setting or one line of error, never more. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    char *argv[] = { "fuzz", "--config", path, "--name", "w2", NULL };
    roo__config cfg;
    char msg[1024];
    FILE *f;

    if (!path[0]) {
        int fd;
        snprintf(path, sizeof(path), "/tmp/roo-fuzz-config.XXXXXX");
        fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
    }
    f = fopen(path, "w");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    roo__config_parse(5, argv, &cfg, msg, sizeof(msg));
    roo__config_finish(&cfg);
    return 0;
}
