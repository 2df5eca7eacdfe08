/* invoices.c - GET /v1/billing/invoices: the caller's invoices, newest
 * first. */

#include "billing.h"

const stoa_column_t billing_invoice_columns[] = {
    {"id", INVOICE_COL_ID, STOA_COLUMN_TEXT},
    {"number", INVOICE_COL_NUMBER, STOA_COLUMN_TEXT},
    {"amount_due", INVOICE_COL_AMOUNT_DUE, STOA_COLUMN_INTEGER},
    {"amount_paid", INVOICE_COL_AMOUNT_PAID, STOA_COLUMN_INTEGER},
    {"amount_refunded", INVOICE_COL_AMOUNT_REFUNDED, STOA_COLUMN_INTEGER},
    {"currency", INVOICE_COL_CURRENCY, STOA_COLUMN_TEXT},
    {"status", INVOICE_COL_STATUS, STOA_COLUMN_TEXT},
    {"created", INVOICE_COL_CREATED, STOA_COLUMN_TEXT},
    {"hosted_invoice_url", INVOICE_COL_HOSTED_INVOICE_URL, STOA_COLUMN_TEXT},
    {"invoice_pdf", INVOICE_COL_INVOICE_PDF, STOA_COLUMN_TEXT},
};

int billing_invoices(stoa_request_t *req)
{
    stoa_page_t page;
    if (!stoa_request_page(req, STOA_PAGE_KEYSET, &page))
        return stoa_http_invalid_fields(req);
    const char *params[] = {req->principal.user_id, page.cursor_ts,
                            page.cursor_id, page.fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(INVOICES_OF_USER), params, &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_list_t list = {billing_invoice_columns,
                                     BILLING_INVOICE_NCOLUMNS, NULL,
                                     INVOICE_COL_CURSOR_US, INVOICE_COL_ID};
    return stoa_http_list(req, res, &page, &list);
}
