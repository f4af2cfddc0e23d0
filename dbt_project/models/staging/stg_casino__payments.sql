with payment_events as (

    select
        *,
        {{ parse_payload({
            'amount': 'BIGINT', 'currency': 'VARCHAR', 'psp': 'VARCHAR',
            'method': 'VARCHAR', 'reason_code': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('payment') }}

)

select
    {{ event_envelope() }},
    p.amount,
    p.currency,
    p.psp,
    p.method,
    p.reason_code
from payment_events
