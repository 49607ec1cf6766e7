/* Secret wiping.  OPENSSL_cleanse is an out-of-line call the optimiser may not
 * elide, unlike memset on a buffer about to die. */
#ifndef KX_CORE_WIPE_H
#define KX_CORE_WIPE_H
#include <openssl/crypto.h>
#define kx_wipe(p, n) OPENSSL_cleanse((p), (n))
#define kx_wipe_obj(o) OPENSSL_cleanse(&(o), sizeof(o))
#endif
